"""The Accelerate training loop: frozen and full fine-tuning, resume after a kill, two real processes."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO_ROOT
from launching import accelerate_launch, launch_environment
from transformers import AutoModel

from hf_dft_head import DFTForMultiLabelClassification
from hf_dft_head.cli import main as cli_main
from hf_dft_head.label_order import label_order
from hf_dft_head.training_data import capacity_note

WORDS = {
    "water": "water",
    "food": "food",
    "shelter": "shelter",
    "medical": "medical_help",
    "fire": "fire",
    "flood": "floods",
    "storm": "storm",
    "child": "child_alone",
    "death": "death",
    "aid": "aid_related",
    "power": "electricity",
    "road": "transport",
}


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


@pytest.fixture(scope="module")
def toy_data(tmp_path_factory) -> dict[str, str]:
    """Train 64 rows, validation 37 (an uneven last batch), test 30; labels follow words in the text."""
    folder = tmp_path_factory.mktemp("toy_data")
    rng = random.Random(0)
    words = list(WORDS)

    def rows(count: int) -> list[dict]:
        out = []
        for _ in range(count):
            chosen = rng.sample(words, rng.randint(0, 3))
            filler = " ".join(rng.choice(["please", "we", "need", "now", "the", "village", "help"]) for _ in range(4))
            out.append({"text": f"{filler} {' '.join(chosen)}", "labels": sorted(WORDS[w] for w in chosen)})
        return out

    files = {}
    for split, count in (("train", 64), ("validation", 37), ("test", 30)):
        files[split] = str(folder / f"{split}.jsonl")
        write_jsonl(Path(files[split]), rows(count))
    return files


def train_args(data: dict[str, str], output_dir: Path, minilm_path: str, *extra: str) -> list[str]:
    return [
        "train",
        "--encoder",
        minilm_path,
        "--encoder-layers",
        "1",
        "--data-files",
        f"train={data['train']}",
        f"validation={data['validation']}",
        f"test={data['test']}",
        "--label-column",
        "labels",
        "--output-dir",
        str(output_dir),
        "--k",
        "3",
        "--slack-dims",
        "2",
        "--batch-size",
        "8",
        "--eval-batch-size",
        "8",
        "--dropout",
        "0",
        "--learning-rate",
        "0.01",
        "--logging-steps",
        "1",
        *extra,
    ]


def head_state(path: Path) -> dict[str, torch.Tensor]:
    model = AutoModel.from_pretrained(path)
    return {name: value.clone() for name, value in model.head.state_dict().items()}


def test_frozen_encoder_training_end_to_end(toy_data, minilm_path, tmp_path):
    out = tmp_path / "run"
    args = train_args(toy_data, out, minilm_path, "--freeze-encoder", "--epochs", "12", "--learning-rate", "0.05")
    assert cli_main(args) == 0
    model = AutoModel.from_pretrained(out)
    assert isinstance(model, DFTForMultiLabelClassification)
    assert model.config.k == 3 and model.config.num_labels == len(model.config.id2label) <= 12
    results = json.loads((out / "eval_results.json").read_text())
    # every evaluation example counted exactly once
    assert results["validation"]["examples"] == results["validation"]["unique_examples"] == 37
    assert results["test"]["examples"] == 30
    # The labels are a function of the words: even a frozen 1-layer encoder learns them well past chance
    # (a label is in ~1.5/12 of the rows, so p@1 by chance is ~0.125; empty rows count as 0 in p@1).
    assert results["test"]["p@1"] > 0.35, results["test"]
    assert len(results["history"]) == 12
    logs = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert any("loss" in record for record in logs) and any("eval" in record for record in logs)
    # the pretrained encoder is untouched by training
    reference = AutoModel.from_pretrained(minilm_path, num_hidden_layers=1)
    torch.testing.assert_close(
        model.encoder.embeddings.word_embeddings.weight, reference.embeddings.word_embeddings.weight
    )
    statistics = json.loads((out / "label_statistics.json").read_text())["statistics"]
    assert statistics["train"]["examples"] == 64 and "share_over_k" in statistics["test"]

    # The circle order: co-occurrence by default, computed from the train sets, recorded in the config.
    assert model.config.label_order_method == "cooccurrence"
    positions = np.asarray(model.config.label_order)
    assert sorted(positions.tolist()) == list(range(model.config.num_labels))
    names = {name: i for i, name in model.config.id2label.items()}
    train_sets = [[names[n] for n in json.loads(line)["labels"]] for line in Path(toy_data["train"]).open()]
    assert np.array_equal(positions, label_order(train_sets, model.config.num_labels, "cooccurrence", seed=42))

    # ... and the share of train sets within the guarantee in that order, counted by hand (cyclically).
    def within(labels: list[int]) -> bool:
        on = np.zeros(model.config.num_labels, dtype=int)
        on[positions[labels]] = 1
        return int(np.sum(on != np.roll(on, 1))) <= 2 * 3

    assert statistics["train"]["share_within_guarantee"] == pytest.approx(np.mean([within(s) for s in train_sets]))

    # `hf-dft evaluate` on the test file (full forward from text) agrees with the training loop's evaluation
    # (cached encoder features): two independent paths to the same metrics.
    metrics_path = tmp_path / "metrics.json"
    evaluate = ["evaluate", str(out), "--data-files", f"test={toy_data['test']}", "--label-column", "labels"]
    assert cli_main([*evaluate, "--split", "test", "--output", str(metrics_path), "--quiet"]) == 0
    evaluated = json.loads(metrics_path.read_text())
    assert evaluated["dataset"]["examples"] == 30
    for name in ("p@1", "p@3", "f1@5", "ndcg@5", "micro_f1", "macro_f1", "exact_match"):
        assert evaluated["metrics"][name] == pytest.approx(results["test"][name], abs=1e-9), name


@pytest.mark.parametrize("head", ["bottleneck", "dense"])
def test_full_fine_tuning_updates_encoder_for_baseline_heads(toy_data, minilm_path, tmp_path, head):
    out = tmp_path / head
    args = train_args(toy_data, out, minilm_path, "--head", head, "--bottleneck-dim", "4", "--epochs", "1")
    assert cli_main([*args, "--encoder-learning-rate", "1e-3"]) == 0
    model = AutoModel.from_pretrained(out)
    assert model.config.head_kind == head
    reference = AutoModel.from_pretrained(minilm_path, num_hidden_layers=1)
    changed = model.encoder.encoder.layer[0].output.dense.weight - reference.encoder.layer[0].output.dense.weight
    assert changed.abs().max().item() > 0


def test_output_dir_with_another_run_is_refused(toy_data, minilm_path, tmp_path, capsys):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    assert cli_main(train_args(toy_data, out, minilm_path, "--freeze-encoder")) == 2
    assert "--resume" in capsys.readouterr().err and (out / "precious.txt").read_text() == "keep me"
    assert cli_main(train_args(toy_data, tmp_path / "fresh", minilm_path, "--resume")) == 2
    assert "no saved training state" in capsys.readouterr().err


def test_missing_column_lists_the_columns(toy_data, minilm_path, tmp_path, capsys):
    args = train_args(toy_data, tmp_path / "x", minilm_path, "--text-column", "message")
    assert cli_main(args) == 2
    error = capsys.readouterr().err
    assert "message" in error and "text" in error and "labels" in error


def test_k_too_large_for_the_labels(toy_data, minilm_path, tmp_path, capsys):
    assert cli_main([*train_args(toy_data, tmp_path / "x", minilm_path), "--k", "30", "--freeze-encoder"]) == 2
    assert "exceeds num_labels" in capsys.readouterr().err


def run_cli_subprocess(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "hf_dft_head.cli", *args],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env={**os.environ, **(env or {})},
        timeout=600,
    )


def test_resume_after_kill_matches_an_uninterrupted_run(toy_data, minilm_path, tmp_path):
    common = ["--freeze-encoder", "--epochs", "3", "--save-steps", "3", "--dropout", "0.2"]
    straight = tmp_path / "straight"
    assert cli_main(train_args(toy_data, straight, minilm_path, *common)) == 0

    killed = tmp_path / "killed"
    # killed hard (SIGKILL) after step 13: mid-epoch 2, one step after the save at step 12
    result = run_cli_subprocess(
        train_args(toy_data, killed, minilm_path, *common), {"HF_DFT_DEBUG_KILL_AFTER_STEP": "13"}
    )
    assert result.returncode == -9, result.stderr[-2000:]
    saved = json.loads((killed / "state" / "trainer_state.json").read_text())
    assert saved["global_step"] == 12 and saved["epoch"] == 1 and saved["step_in_epoch"] == 4
    assert cli_main(train_args(toy_data, killed, minilm_path, *common)) == 2  # refused without --resume
    assert cli_main([*train_args(toy_data, killed, minilm_path, *common), "--resume"]) == 0

    for name, value in head_state(straight).items():
        torch.testing.assert_close(head_state(killed)[name], value, rtol=0, atol=0)
    a = json.loads((straight / "eval_results.json").read_text())
    b = json.loads((killed / "eval_results.json").read_text())
    assert a["test"] == b["test"] and a["global_step"] == b["global_step"] == 24


@pytest.mark.slow
def test_two_process_accelerate_launch_matches_one_process(toy_data, minilm_path, tmp_path):
    """Real data parallelism: two gloo processes with batch 4 each == one process with batch 8."""
    digests = tmp_path / "digests"
    two = tmp_path / "two"
    launch = accelerate_launch(2, str(REPO_ROOT / "scripts" / "train.py"))
    args = train_args(toy_data, two, minilm_path, "--freeze-encoder", "--epochs", "2")[1:]
    args[args.index("--batch-size") + 1] = "4"
    env = launch_environment(HF_DFT_DEBUG_PARAM_DIGESTS=str(digests))
    result = subprocess.run([*launch, *args], capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    rank0 = Path(f"{digests}.rank0").read_text().splitlines()
    rank1 = Path(f"{digests}.rank1").read_text().splitlines()
    assert len(rank0) == 16 and rank0 == rank1  # identical parameters on both ranks after every step
    results_two = json.loads((two / "eval_results.json").read_text())
    assert results_two["num_processes"] == 2
    for split, size in (("validation", 37), ("test", 30)):
        assert results_two[split]["examples"] == results_two[split]["unique_examples"] == size

    one = tmp_path / "one"
    assert cli_main(train_args(toy_data, one, minilm_path, "--freeze-encoder", "--epochs", "2")) == 0
    results_one = json.loads((one / "eval_results.json").read_text())
    # Same global batch, same sampler order and no dropout: only float summation order differs.
    for split in ("validation", "test"):
        for metric, value in results_one[split].items():
            assert results_two[split][metric] == pytest.approx(value, abs=1e-6), (split, metric)
    for name, value in head_state(one).items():
        np.testing.assert_allclose(head_state(two)[name].numpy(), value.numpy(), atol=1e-5)


def test_missing_data_file_is_a_clear_error(minilm_path, tmp_path, capsys):
    missing = tmp_path / "nope.jsonl"
    assert (
        cli_main(["train", "--encoder", minilm_path, "--dataset", str(missing), "--output-dir", str(tmp_path / "o")])
        == 2
    )
    assert str(missing) in capsys.readouterr().err


def test_binary_label_columns_given_comma_separated(minilm_path, tmp_path):
    rng = random.Random(1)
    lines = ["message,water,food,fire"]
    for _ in range(40):
        flags = [rng.randint(0, 1) for _ in range(3)]
        words = " ".join(w for w, f in zip(("water", "food", "fire"), flags) if f) or "hello"
        lines.append(f"we need {words},{flags[0]},{flags[1]},{flags[2]}")
    data = tmp_path / "flags.csv"
    data.write_text("\n".join(lines) + "\n")
    out = tmp_path / "run"
    args = ["train", "--encoder", minilm_path, "--encoder-layers", "1", "--dataset", str(data)]
    args += ["--text-column", "message", "--label-columns", "water,food,fire", "--k", "1", "--freeze-encoder"]
    assert cli_main([*args, "--epochs", "1", "--output-dir", str(out)]) == 0
    config = AutoModel.from_pretrained(out).config
    assert sorted(config.id2label.values()) == ["fire", "food", "water"]


def test_overwrite_with_bad_input_keeps_the_old_run(toy_data, minilm_path, tmp_path, capsys):
    out = tmp_path / "run"
    assert cli_main(train_args(toy_data, out, minilm_path, "--freeze-encoder", "--epochs", "1")) == 0
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    bad = train_args(toy_data, out, minilm_path, "--freeze-encoder", "--overwrite", "--k", "40")
    assert cli_main(bad) == 2 and "exceeds num_labels" in capsys.readouterr().err
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before  # nothing removed or rewritten
    assert AutoModel.from_pretrained(out).config.k == 3


def test_pos_weight_auto_and_from_a_file(toy_data, minilm_path, tmp_path, capsys):
    """--pos-weight auto: (negatives / positives) per label in train, clipped; a JSON file by label name."""
    from hf_dft_head.data import DataArguments, load_data
    from hf_dft_head.training_args import DFTTrainingArguments
    from hf_dft_head.training_data import positive_weights

    loaded = load_data(DataArguments(data_files=[f"train={toy_data['train']}"], label_column="labels"))
    args = DFTTrainingArguments(output_dir=str(tmp_path / "unused"), pos_weight="auto", pos_weight_max=3.0)
    weights = positive_weights(loaded, args)
    train_rows = len(loaded.dataset["train"])
    for i, name in enumerate(loaded.vocabulary.labels):
        # the carved validation split is not train: count positives among the train split's rows only
        positives = sum(name in loaded.vocabulary.decode(ids) for ids in loaded.dataset["train"]["labels"])
        assert weights[i].item() == pytest.approx(min(max((train_rows - positives) / positives, 1.0), 3.0))

    weight_file = tmp_path / "weights.json"
    weight_file.write_text(json.dumps({"water": 4.0, "fire": 0.5}))
    file_args = DFTTrainingArguments(output_dir=str(tmp_path / "unused"), pos_weight=str(weight_file))
    by_name = dict(zip(loaded.vocabulary.labels, positive_weights(loaded, file_args).tolist()))
    assert by_name["water"] == 4.0 and by_name["fire"] == 0.5 and by_name["food"] == 1.0

    out = tmp_path / "weighted"
    assert (
        cli_main([*train_args(toy_data, out, minilm_path, "--freeze-encoder", "--epochs", "1"), "--pos-weight", "auto"])
        == 0
    )
    assert json.loads((out / "training_args.json").read_text())["pos_weight"] == "auto"
    weight_file.write_text(json.dumps({"no_such_label": 2.0}))
    code = cli_main([*train_args(toy_data, tmp_path / "bad", minilm_path), "--pos-weight", str(weight_file)])
    assert code == 2 and "labels not in the data: ['no_such_label']" in capsys.readouterr().err


def test_unset_options_take_the_defaults_of_the_training_mode(tmp_path):
    """learning rate, dropout, epochs and batch size left unset: the head-only recipe with --freeze-encoder, the usual
    fine-tuning values otherwise; a value given explicitly is kept, and the run records the values it used."""
    from hf_dft_head.training_args import MODE_DEFAULTS, DFTTrainingArguments, check_arguments

    frozen = DFTTrainingArguments(output_dir=str(tmp_path / "a"), freeze_encoder=True, epochs=2)
    check_arguments(frozen)
    assert (frozen.learning_rate, frozen.dropout, frozen.batch_size, frozen.epochs) == (0.1, 0.0, 128, 2)
    tuned = DFTTrainingArguments(output_dir=str(tmp_path / "b"), learning_rate=5e-4)
    check_arguments(tuned)
    assert (tuned.learning_rate, tuned.dropout, tuned.batch_size, tuned.epochs) == (5e-4, 0.1, 32, 5)
    assert set(MODE_DEFAULTS["frozen_encoder"]) == set(MODE_DEFAULTS["fine_tuning"])
    assert json.loads(json.dumps(frozen.to_json()))["learning_rate"] == 0.1  # what training_args.json records
    with pytest.raises(ValueError, match="--learning-rate must be a number > 0"):
        check_arguments(DFTTrainingArguments(output_dir=str(tmp_path / "c"), learning_rate=0.0))


@pytest.mark.parametrize(
    "n, k, slack, hidden, expected",
    [
        (34, 10, 0, 384, None),  # the main job: 1.6 labels per dimension
        (2_100, 10, 0, 384, None),  # exactly 100 per dimension: no note
        (2_101, 10, 0, 384, ["2,101 labels", "= 21 dimensions", "(100 labels per dimension)", "up to 191"]),
        (10_000, 10, 8, 384, ["= 29 dimensions", "(345 labels per dimension)", "up to 187 with this encoder's 384"]),
        (1_000_000, 191, 0, 384, ["= 383 dimensions", "k = 191 is the largest this encoder allows", "--slack-dims"]),
    ],
)
def test_capacity_note_names_the_labels_per_dimension_and_the_largest_k(n, k, slack, hidden, expected):
    note = capacity_note(n, k, slack, hidden)
    if expected is None:
        assert note is None
        return
    assert all(part in note for part in expected), note
    # The largest k it names fits the encoder: 2k + 1 + slack <= hidden, and one more would not.
    largest = (hidden - 1 - slack) // 2
    assert 2 * largest + 1 + slack <= hidden < 2 * (largest + 1) + 1 + slack
