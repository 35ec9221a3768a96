"""The audit of a stock multi-label BertForSequenceClassification whose never-outputtable label sets are known."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

from hf_dft_head import audit, audit_report
from hf_dft_head.checkpoints import load_checkpoint
from hf_dft_head.cli import main as cli_main
from hf_dft_head.sigmoid_head import find_sigmoid_head

LABELS = ["water", "food", "shelter", "medical", "search", "security", "money", "ghost"]
WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "need", "help", "flood", "fire", "the", "now", "please"]
A, B, C, GHOST = 0, 1, 2, 7


def expected_unargmaxable(label_set: tuple[int, ...]) -> bool:
    """Hand-derived for the classifier built below, in the box |x|_inf <= 1 of BERT's tanh pooler.

    ``z_food = (z_water + z_shelter) / 2`` (row and bias averaged), so food is on when both ends are on and off
    when both are off; ``z_ghost = w . x - 2`` with ``|w|_1 = 1`` is negative everywhere in the box. The other rows
    are linearly independent with zero bias, so every other sign pattern is reachable.
    """
    on = set(label_set)
    if GHOST in on:
        return True
    return (A in on and C in on and B not in on) or (A not in on and C not in on and B in on)


def build_stock_checkpoint(folder: Path, *, problem_type: str | None = "multi_label_classification") -> Path:
    """A tiny BERT multi-label classifier (hidden 32, 8 labels) with the hand-set classifier, plus a tokenizer."""
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(WORDS),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=37,
        num_labels=len(LABELS),
        id2label=dict(enumerate(LABELS)),
        problem_type=problem_type,
    )
    model = BertForSequenceClassification(config).eval()
    generator = np.random.default_rng(1)
    # Small integers: the average below is exact in float32, so food's region is empty, not a rounding sliver.
    weight = generator.integers(-4, 5, size=(len(LABELS), 32)).astype(np.float64)
    weight[B] = (weight[A] + weight[C]) / 2
    weight[GHOST] = np.full(32, 1.0 / 32)  # |w|_1 = 1
    bias = np.zeros(len(LABELS))
    bias[GHOST] = -2.0
    with torch.no_grad():
        model.classifier.weight.copy_(torch.from_numpy(weight))
        model.classifier.bias.copy_(torch.from_numpy(bias))
    model.save_pretrained(folder)
    BertTokenizerFast(vocab={word: i for i, word in enumerate(WORDS)}).save_pretrained(folder)
    return folder


def write_dataset(path: Path, label_sets: list[tuple[int, ...]]) -> Path:
    """A JSON-lines split: one example per label set, labels by name, texts from the tiny vocabulary."""
    generator = np.random.default_rng(2)
    with open(path, "w") as handle:
        for label_set in label_sets:
            text = " ".join(generator.choice(WORDS[5:], size=5))
            handle.write(json.dumps({"text": text, "labels": [LABELS[i] for i in label_set]}) + "\n")
    return path


ALL_SETS = [s for size in range(len(LABELS) + 1) for s in itertools.combinations(range(len(LABELS)), size)]


@pytest.fixture(scope="module")
def stock_checkpoint(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("stock")
    return build_stock_checkpoint(root / "model"), write_dataset(root / "test.jsonl", ALL_SETS)


def test_find_sigmoid_head_of_stock_bert_uses_the_exact_tanh_box(stock_checkpoint) -> None:
    model, _ = load_checkpoint(stock_checkpoint[0])
    head = find_sigmoid_head(model)
    assert head.kind == "stock" and head.box == 1.0 and "tanh" in head.space
    np.testing.assert_array_equal(head.weight, model.classifier.weight.detach().double().numpy())
    assert head.bias[GHOST] == -2.0 and head.label_names == LABELS


def test_audit_flags_exactly_the_known_unargmaxable_sets(stock_checkpoint) -> None:
    folder, data = stock_checkpoint
    report = audit.audit_checkpoint(folder, audit.dataset_spec(str(data), "test"), progress=False)
    gold = report["gold"]
    expected = sum(expected_unargmaxable(s) for s in ALL_SETS)
    assert expected == 128 + 32  # every ghost set, and 2 * 2^4 food patterns without the ghost
    assert gold["distinct_sets"] == 256 and gold["undecided"] == 0
    assert gold["unargmaxable"] == expected and gold["argmaxable"] == 256 - expected
    by_size = {row["size"]: row for row in gold["by_size"]}
    for size in range(len(LABELS) + 1):
        sets = [s for s in ALL_SETS if len(s) == size]
        assert by_size[size]["unargmaxable"] == sum(expected_unargmaxable(s) for s in sets), size
    # The examples quote label names; each one is a never-outputtable set.
    for example in gold["unargmaxable_examples"]:
        assert expected_unargmaxable(tuple(LABELS.index(name) for name in example["labels"]))

    # Every predicted set is an actual output of the model, so it must be argmaxable; ghost is never predicted.
    predicted = report["predicted"]
    assert predicted["unargmaxable"] == 0 and predicted["argmaxable"] == predicted["distinct_sets"] >= 1
    assert predicted["examples"] == 256
    assert all(row["size"] < len(LABELS) for row in predicted["by_size"])


def test_the_tanh_bound_matters_ghost_sets_are_reachable_only_without_it(stock_checkpoint) -> None:
    model, _ = load_checkpoint(stock_checkpoint[0])
    head = find_sigmoid_head(model)
    sets = [(GHOST,), (A, GHOST), (A, C)]
    bounded, settings = audit.verify_sets(head, sets, progress=False)
    assert settings["box"] == 1.0 and "always-on rows" in settings["feature_bound"]
    assert [r.status for r in bounded] == ["unargmaxable", "unargmaxable", "unargmaxable"]
    # Without the tanh bound (the engine's plain box), w . x can exceed 2: the ghost turns on.
    # (A, C) without food stays impossible everywhere.
    unbounded, settings = audit.verify_sets(head, sets, audit.VerifierOptions(box=10.0), progress=False)
    assert settings["box"] == 10.0 and settings["feature_bound"] is None
    assert [r.status for r in unbounded] == ["argmaxable", "argmaxable", "unargmaxable"]


def test_cli_writes_report_plot_and_summary_with_label_names(stock_checkpoint, tmp_path, capsys) -> None:
    folder, data = stock_checkpoint
    report_path, figure_path = tmp_path / "report.json", tmp_path / "fig.png"
    arguments = [str(folder), "--dataset", str(data), "--output", str(report_path), "--plot", str(figure_path)]
    assert cli_main(["audit", *arguments, "--quiet"]) == 0
    report = json.loads(report_path.read_text())
    assert report["gold"]["unargmaxable"] == 160 and report["verifier"]["box"] == 1.0
    assert figure_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The figure's data is the argmaxable share per size, matching the by-size rows.
    shares = {size: share for size, share, _ in report["figure"]["series"]["gold"]}
    assert shares[0] == 1.0 and shares[8] == 0.0
    out = capsys.readouterr().out
    assert "160 never outputtable" in out and "ghost" in out
    # --plot without a path puts the figure next to the report, not in the working directory
    nested = tmp_path / "nested" / "report.json"
    nested.parent.mkdir()
    assert cli_main(["audit", str(folder), "--dataset", str(data), "--output", str(nested), "--plot", "--quiet"]) == 0
    assert (nested.parent / audit_report.AUDIT_FIGURE_NAME).read_bytes()[:4] == b"\x89PNG"


def test_single_label_regression_and_unset_problem_type_are_refused(tmp_path, capsys) -> None:
    single = build_stock_checkpoint(tmp_path / "single", problem_type="single_label_classification")
    with pytest.raises(ValueError, match="single-label"):
        load_checkpoint(single)
    unset = build_stock_checkpoint(tmp_path / "unset", problem_type=None)
    with pytest.raises(ValueError, match="no problem_type"):
        load_checkpoint(unset)
    model, _ = load_checkpoint(unset, assume_multi_label=True)
    assert find_sigmoid_head(model, assume_multi_label=True).num_labels == len(LABELS)
    regression = BertForSequenceClassification(
        BertConfig(vocab_size=12, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, num_labels=1)
    )
    with pytest.raises(ValueError, match="regression"):
        find_sigmoid_head(regression)

    arguments = [str(single), "--dataset", "unused.jsonl", "--output", str(tmp_path / "r.json"), "--quiet"]
    assert cli_main(["audit", *arguments]) == 2
    assert "single-label" in capsys.readouterr().err and not (tmp_path / "r.json").exists()
