"""Certificates of tiny DFT checkpoints: what they state, and that verify catches every kind of edit."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file
from transformers import BertConfig, BertModel, BertTokenizerFast

import hf_dft_head
from hf_dft_head import DFTForMultiLabelClassification, certificate, certificate_checks
from hf_dft_head.audit import VerifierOptions, dataset_spec
from hf_dft_head.gale import gale_matrix

N_LABELS, K = 24, 3
LABELS = [f"topic_{i:02d}" for i in range(N_LABELS)]
WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "need", "help", "flood", "fire", "the", "now", "water"]


def sign_changes(label_set: tuple[int, ...]) -> int:
    """Independent reference: #{j < n-1 : y_j != y_{j+1}} of the 0/1 indicator in label-id (circle) order."""
    y = np.zeros(N_LABELS, dtype=int)
    y[list(label_set)] = 1
    return int(np.sum(y[1:] != y[:-1]))


def gold_label_sets() -> list[tuple[int, ...]]:
    """Sets of 0..7 labels: small ones (always argmaxable), and larger ones on both sides of the 2k rule."""
    generator = np.random.default_rng(3)
    sets = [(), (0,), (5, 6, 7), (0, 23), (1, 3, 5), (2, 9, 15)]
    sets += [(0, 2, 4, 6), (1, 2, 3, 4, 5, 6, 7), (3, 7, 11, 15, 19), (0, 1, 10, 11, 20, 21)]
    sets += [tuple(sorted(generator.choice(N_LABELS, size=size, replace=False).tolist())) for size in (2, 4, 5, 6)]
    return sets


def build_checkpoint(folder: Path, head_kind: str = "dft", seed: int = 0, slack_dims: int = 0) -> Path:
    """A tiny BERT (hidden 32) + head over 24 labels (``slack_dims`` slack columns on a DFT head), with a tokenizer."""
    torch.manual_seed(seed)
    encoder = BertModel(
        BertConfig(
            vocab_size=len(WORDS), hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37
        )
    )
    model = DFTForMultiLabelClassification.from_encoder(
        encoder, id2label=dict(enumerate(LABELS)), k=K, head_kind=head_kind, bottleneck_dim=4, slack_dims=slack_dims
    )
    with torch.no_grad():  # a head that predicts a few labels per text, so predicted sets are not all empty
        for parameter in model.head.parameters():
            parameter.normal_(0.0, 1.0)
    model.eval().save_pretrained(folder)
    BertTokenizerFast(vocab={word: i for i, word in enumerate(WORDS)}).save_pretrained(folder)
    return folder


def write_dataset(path: Path) -> Path:
    generator = np.random.default_rng(4)
    with open(path, "w") as handle:
        for label_set in gold_label_sets() * 2:
            text = " ".join(generator.choice(WORDS[5:], size=6))
            handle.write(json.dumps({"text": text, "labels": [LABELS[i] for i in label_set]}) + "\n")
    return path


@pytest.fixture(scope="module")
def certified(tmp_path_factory) -> tuple[Path, Path, dict]:
    root = tmp_path_factory.mktemp("certified")
    folder, data = build_checkpoint(root / "dft"), write_dataset(root / "gold.jsonl")
    written = certificate.certify(folder, dataset_spec(str(data), "test"), progress=False)
    return folder, data, written


def test_certificate_states_the_guarantee_and_checked_conditions(certified) -> None:
    folder, _, written = certified
    assert json.loads((folder / certificate.CERTIFICATE_NAME).read_text()) == written
    assert written["status"] == "certified" and written["reasons_not_certified"] == []
    # Every file push would publish is bound: weights, config, code, tokenizer and the figure.
    assert set(written["files"]) == {path.name for path in folder.iterdir()} - {certificate.CERTIFICATE_NAME}
    assert {"config.json", "model.safetensors", "modeling.py", "gale.py", "tokenizer.json", "argmaxability.png"} <= set(
        written["files"]
    )
    for name, digest in written["files"].items():
        assert digest == hashlib.sha256((folder / name).read_bytes()).hexdigest(), name
    assert written["package"]["version"] == hf_dft_head.__version__
    assert written["checks"]["code"]["identical_to_package"] and written["checks"]["code"]["passed"]
    remote = written["checks"]["remote_code"]
    assert remote["passed"] and remote["loaded_from_checkpoint_code"]
    assert remote["float64_max_relative_error"] < 1e-12 and remote["dtype"] == "float32"

    guarantee = written["guarantee"]
    assert (guarantee["k"], guarantee["max_sign_changes"], guarantee["num_labels"]) == (K, 2 * K, N_LABELS)
    assert guarantee["spaces"] == ["head_input", "encoder_features"]
    # 2 * sum_{i<=k} C(n, 2i) for n = 24, k = 3, by hand: 2 * (1 + 276 + 10626 + 134596).
    assert guarantee["argmaxable_sets_by_rule"] == 2 * (1 + 276 + 10626 + 134596)

    checks = written["checks"]
    assert checks["gale_matrix"]["passed"] and checks["gale_matrix"]["max_abs_error"] < 1e-12
    assert checks["head_composition"]["passed"]
    # sigma_min(P) read independently from the safetensors file.
    projection = load_file(folder / "model.safetensors")["head.weight"].astype(np.float64)
    assert projection.shape == (2 * K + 1, 32)
    singular_values = np.linalg.svd(projection, compute_uv=False)
    assert checks["projection"]["smallest_singular_value"] == pytest.approx(singular_values[-1], rel=1e-12)
    assert checks["projection"]["full_row_rank"]

    # For a pure DFT head the verdicts must follow the sign-change rule, computed here independently.
    gold = written["audit"]["gold"]
    distinct = set(gold_label_sets())
    expected_yes = sum(sign_changes(s) <= 2 * K for s in distinct)
    assert (gold["distinct_sets"], gold["examples"]) == (len(distinct), 2 * len(gold_label_sets()))
    assert (gold["argmaxable"], gold["unargmaxable"], gold["undecided"]) == (
        expected_yes,
        len(distinct) - expected_yes,
        0,
    )
    assert 0 < expected_yes < len(distinct)
    assert gold["sets_larger_than_k"] == sum(len(s) > K for s in distinct)
    for example in gold["unargmaxable_examples"]:
        assert sign_changes(tuple(example["label_ids"])) > 2 * K
    assert written["audit"]["predicted"]["unargmaxable"] == 0  # the model's own outputs are outputtable
    # Quality of the predictions on the audit split, against an independent computation with the plugin's model.
    quality = written["audit"]["quality"]
    assert set(quality) >= {"p@1", "f1@5", "micro_f1", "macro_f1"}
    assert quality["p@1"] == pytest.approx(_precision_at_1(folder, gold_label_sets() * 2), abs=1e-12)
    assert {"torch", "transformers", "numpy"} <= set(written["software"])


def _precision_at_1(folder: Path, label_sets: list[tuple[int, ...]]) -> float:
    """P@1 of the checkpoint's logits on the dataset's texts, computed here with torch and plain Python."""
    model = DFTForMultiLabelClassification.from_pretrained(folder).eval()
    tokenizer = BertTokenizerFast.from_pretrained(folder)
    texts = [json.loads(line)["text"] for line in (folder.parent / "gold.jsonl").read_text().splitlines()]
    with torch.no_grad():
        logits = model(**tokenizer(texts, padding=True, return_tensors="pt")).logits
    top = logits.argmax(dim=1).tolist()
    return sum(top[i] in label_sets[i] for i in range(len(texts))) / len(texts)


def test_verify_passes_on_the_untouched_checkpoint(certified, capsys) -> None:
    from hf_dft_head.cli import main as cli_main

    folder = certified[0]
    result = certificate.verify_checkpoint(folder, progress=False)
    assert result.ok and result.outcome == "verified", result.summary()
    assert any("checkpoint's own code" in line for line in result.checked)
    assert cli_main(["verify", str(folder), "--quiet"]) == 0
    assert "VERIFIED" in capsys.readouterr().out


def test_skip_audit_says_the_audit_was_not_checked(certified, capsys) -> None:
    from hf_dft_head.cli import main as cli_main

    result = certificate.verify_checkpoint(certified[0], recheck_audit=False, progress=False)
    assert result.ok and result.outcome == "partial"
    assert any("audit" in line for line in result.skipped)
    assert cli_main(["verify", str(certified[0]), "--skip-audit", "--quiet"]) == 3
    out = capsys.readouterr().out
    assert "NOT FULLY VERIFIED" in out and "NOT CHECKED  the audit" in out


def test_bottleneck_head_is_audited_but_not_certified(tmp_path) -> None:
    folder = build_checkpoint(tmp_path / "bottleneck", head_kind="bottleneck")
    data = write_dataset(tmp_path / "gold.jsonl")
    options = VerifierOptions(predictions=False)
    written = certificate.certify(folder, dataset_spec(str(data), "test"), options, progress=False)
    assert written["status"] == "not_certified" and written["guarantee"] is None
    gold = written["audit"]["gold"]
    assert "predicted" not in written["audit"] and gold["unargmaxable"] > 0  # rank 4 over 24 labels
    assert f"({gold['unargmaxable']} of {gold['distinct_sets']} distinct sets)" in written["reasons_not_certified"][0]
    # The statement is accurate, so verify passes: "not certified" is a verdict, not a mismatch.
    assert certificate.verify_checkpoint(folder, progress=False).ok


def test_gale_check_catches_a_wrong_layer(certified, monkeypatch) -> None:
    model = DFTForMultiLabelClassification.from_pretrained(certified[0]).eval()
    good = certificate_checks.check_dft_layer(model)
    assert good["gale_matrix"]["passed"]
    # A layer whose sin columns had the opposite sign (the conjugate mistake) must fail the G check.
    flipped = gale_matrix(N_LABELS, K)
    flipped[:, 2::2] *= -1
    monkeypatch.setattr(certificate_checks, "gale_matrix", lambda n, k: flipped)
    bad = certificate_checks.check_dft_layer(model)
    assert not bad["gale_matrix"]["passed"] and bad["gale_matrix"]["max_abs_error"] > 0.1


def test_model_card_carries_metadata_quality_and_argmaxability(certified, tmp_path) -> None:
    from hf_dft_head.checkpoints import read_card_inputs
    from hf_dft_head.model_card import render_model_card

    folder = Path(shutil.copytree(certified[0], tmp_path / "copy"))
    # Numbers a training run merely reports are not recomputed by verify, so the card must not show them.
    (folder / "eval_results.json").write_text(json.dumps({"validation": {"p@1": 0.6161}, "test": {"f1@5": 0.4242}}))
    (folder / "training_args.json").write_text(json.dumps({"encoder": "org/encoder", "k": K, "epochs": 3}))
    card = render_model_card(**read_card_inputs(folder), repo_id="alice/tiny", license="apache-2.0")
    data = card.data.to_dict()
    assert data["library_name"] == "transformers" and data["pipeline_tag"] == "text-classification"
    assert data["base_model"] == "org/encoder" and "argmaxability-certified" in data["tags"]
    results = {(r.dataset_split, r.metric_type): r.metric_value for r in card.data.eval_results}
    quality = certified[2]["audit"]["quality"]
    assert results[("test", "p@1")] == pytest.approx(quality["p@1"], abs=1e-6)
    assert results[("test", "f1@5")] == pytest.approx(quality["f1@5"], abs=1e-6)
    gold = certified[2]["audit"]["gold"]
    assert results[("test", "argmaxable_share_gold_label_sets")] == pytest.approx(gold["argmaxable_share"], abs=1e-6)
    assert results[("test", "unargmaxable_sets_gold_label_sets")] == gold["unargmaxable"]
    text = str(card)
    assert "every set of at most k = 3 labels" in text and "hf-dft verify alice/tiny" in text
    assert "0.6161" not in text and "0.4242" not in text and "![Argmaxable share" in text
    assert "| epochs | 3 |" in text

    # Rendered without re-checking the audit: no audit or quality number at all.
    unchecked = render_model_card(**read_card_inputs(folder), repo_id="alice/tiny", audit_verified=False)
    assert not unchecked.data.eval_results
    assert "Not shown: this card was rendered without re-checking" in str(unchecked)
    assert f"{quality['p@1']:.4f}" not in str(unchecked) and "| gold |" not in str(unchecked)


def test_verify_of_a_missing_folder_names_it(tmp_path, capsys) -> None:
    from hf_dft_head.cli import main as cli_main

    missing = tmp_path / "no_such_checkpoint"
    assert cli_main(["verify", str(missing)]) == 2
    assert f"{missing} is not a checkpoint folder" in capsys.readouterr().err


def test_certify_and_verify_through_the_cli_with_the_runs_recorded_data(tmp_path, capsys) -> None:
    """`hf-dft certify CKPT` without --dataset takes the data named in training_args.json, then verify passes."""
    from hf_dft_head.cli import main as cli_main

    folder, data = build_checkpoint(tmp_path / "ckpt"), write_dataset(tmp_path / "gold.jsonl")
    (folder / "training_args.json").write_text(json.dumps({"data_files": [f"test={data}"], "text_column": "text"}))
    assert cli_main(["certify", str(folder), "--split", "test", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Certified: every label set with at most 6 sign changes")
    written = json.loads((folder / certificate.CERTIFICATE_NAME).read_text())
    assert written["audit"]["dataset"]["data_files"] == [f"test={data.resolve()}"]
    assert cli_main(["verify", str(folder), "--quiet"]) == 0
    assert "VERIFIED" in capsys.readouterr().out
