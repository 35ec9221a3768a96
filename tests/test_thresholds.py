"""Per-label decision thresholds: the tuner against brute force, storing and applying them, keeping the guarantee,
the audit and certificate of a thresholded DFT head against an independent LP, and the command's bad input."""

from __future__ import annotations

import dataclasses
import itertools
import json
import shutil
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file
from scipy.optimize import linprog
from transformers import AutoConfig, BertConfig, BertForSequenceClassification, BertModel, BertTokenizerFast

from hf_dft_head import DFTForMultiLabelClassification, audit, certificate, cli
from hf_dft_head import thresholds as thresholds_module
from hf_dft_head.audit import dataset_spec
from hf_dft_head.checkpoints import load_checkpoint, read_card_inputs
from hf_dft_head.metrics.quality import macro_f1, micro_f1, multi_hot_from_label_ids
from hf_dft_head.model_card import render_model_card
from hf_dft_head.sigmoid_head import find_sigmoid_head
from hf_dft_head.threshold_tuning import (
    EDGE_MARGIN,
    best_uniform_threshold,
    column_space_shift,
    project_thresholds,
    tune_thresholds,
)
from hf_dft_head.thresholds import THRESHOLDS_RECORD, ThresholdOptions, tune_checkpoint

N_LABELS, K = 12, 2
LABELS = [f"tag_{i:02d}" for i in range(N_LABELS)]
WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "rain", "road", "fire", "food", "help", "the", "now", "boat"]


# ----------------------------------------------------------------------------------------------------------------
# The tuner against brute force
# ----------------------------------------------------------------------------------------------------------------


def all_cut_thresholds(column: np.ndarray) -> list[float]:
    """Independent reference: one threshold per distinct decision on this column (above all, between each pair of
    distinct logits, below all), placed as the tuner documents it."""
    values = np.unique(column)[::-1]
    middles = [(a + b) / 2 for a, b in zip(values[:-1], values[1:])]
    return [values[0] + EDGE_MARGIN, *middles, values[-1] - EDGE_MARGIN]


def exact_f1(true_positives: int, predicted: int, positives: int) -> Fraction:
    return Fraction(2 * true_positives, predicted + positives) if predicted + positives else Fraction(0)


def random_problem(generator, rows: int, labels: int) -> tuple[np.ndarray, np.ndarray]:
    """Logits on a coarse grid (many ties), some labels without positives, some rows without labels."""
    logits = generator.integers(-3, 4, size=(rows, labels)).astype(np.float64) / 2
    targets = generator.random((rows, labels)) < 0.4
    return logits, targets


def test_macro_thresholds_equal_a_brute_force_search_per_label() -> None:
    generator = np.random.default_rng(0)
    checked = 0
    for _ in range(150):
        logits, targets = random_problem(generator, int(generator.integers(2, 9)), int(generator.integers(1, 5)))
        if not targets.any():
            continue
        tuned = tune_thresholds(logits, targets, "macro_f1", fallback="zero")
        total = Fraction(0)
        for label in range(logits.shape[1]):
            positives = int(targets[:, label].sum())
            if positives == 0:  # not tuned: the fallback
                assert tuned.thresholds[label] == 0.0 and label in tuned.fallback_labels
                continue
            # Best F1, then fewest predictions: the tuner's documented tie rule.
            best = max(
                all_cut_thresholds(logits[:, label]),
                key=lambda t: (
                    exact_f1(
                        int(((logits[:, label] > t) & targets[:, label]).sum()),
                        int((logits[:, label] > t).sum()),
                        positives,
                    ),
                    -int((logits[:, label] > t).sum()),
                ),
            )
            assert tuned.thresholds[label] == best
            predicted = logits[:, label] > best
            total += exact_f1(int((predicted & targets[:, label]).sum()), int(predicted.sum()), positives)
        assert tuned.value == pytest.approx(float(total / logits.shape[1]), abs=1e-12)
        checked += 1
    assert checked > 100


def test_micro_thresholds_equal_a_brute_force_search_over_all_labels_jointly() -> None:
    """Every combination of per-label decisions is tried; the maximisers of micro-F1 form a product set (one
    optimal set of decisions per label), and the tuner takes in each label the one predicting fewest examples."""
    generator = np.random.default_rng(1)
    checked = 0
    for _ in range(120):
        logits, targets = random_problem(generator, int(generator.integers(2, 8)), int(generator.integers(1, 4)))
        if not targets.any():
            continue
        tuned = tune_thresholds(logits, targets, "micro_f1", fallback="zero")
        free = [i for i in range(logits.shape[1]) if targets[:, i].any()]
        fixed = [i for i in range(logits.shape[1]) if not targets[:, i].any()]
        fixed_predicted = int((logits[:, fixed] > 0.0).sum())  # the fallback labels' decisions are given
        positives = int(targets.sum())
        scored = []
        for combination in itertools.product(*(all_cut_thresholds(logits[:, i]) for i in free)):
            decisions = [logits[:, i] > t for i, t in zip(free, combination)]
            true_positives = sum(int((d & targets[:, i]).sum()) for i, d in zip(free, decisions))
            predicted = [int(d.sum()) for d in decisions]
            scored.append(
                (exact_f1(true_positives, sum(predicted) + fixed_predicted, positives), predicted, combination)
            )
        best = max(score for score, _, _ in scored)
        winners = [entry for entry in scored if entry[0] == best]
        fewest = [min(entry[1][j] for entry in winners) for j in range(len(free))]
        chosen = [entry for entry in winners if entry[1] == fewest]
        assert len(chosen) == 1  # the per-label minima are themselves a maximiser
        assert [tuned.thresholds[i] for i in free] == list(chosen[0][2])
        assert tuned.value == pytest.approx(float(best), abs=1e-12)
        checked += 1
    assert checked > 80


def uniform_score(logits: np.ndarray, targets: np.ndarray, t: float, metric: str) -> tuple[Fraction, int]:
    """Exact micro- or macro-F1 of one threshold for all labels, then fewer predictions first."""
    decisions = logits > t
    if metric == "micro_f1":
        value = exact_f1(int((decisions & targets).sum()), int(decisions.sum()), int(targets.sum()))
    else:
        per_label = [
            exact_f1(int((decisions[:, i] & targets[:, i]).sum()), int(decisions[:, i].sum()), int(targets[:, i].sum()))
            for i in range(logits.shape[1])
        ]
        value = sum(per_label) / logits.shape[1]
    return value, -int(decisions.sum())


@pytest.mark.parametrize("metric", ["micro_f1", "macro_f1"])
def test_best_uniform_threshold_equals_a_brute_force_search(metric: str) -> None:
    generator = np.random.default_rng(2)
    for _ in range(150):
        logits, targets = random_problem(generator, int(generator.integers(2, 7)), int(generator.integers(1, 4)))
        if not targets.any():
            continue

        best = max(all_cut_thresholds(logits.ravel()), key=lambda t: uniform_score(logits, targets, t, metric))
        assert best_uniform_threshold(logits, targets, metric) == best


def test_adjacent_float_logits_are_still_separated() -> None:
    """Two logits one ulp apart have no float between them: the threshold is the lower one (z > t is strict)."""
    for upper in (0.3, 0.7, 1.0):  # their float midpoints round down, up, up
        lower = np.nextafter(upper, -np.inf)
        logits = np.array([[upper], [lower]])
        tuned = tune_thresholds(logits, np.array([[1], [0]]), "macro_f1")
        assert tuned.thresholds[0] == lower
        assert (logits[:, 0] > tuned.thresholds[0]).tolist() == [True, False]


def test_tuned_thresholds_beat_the_default_and_every_perturbation() -> None:
    """Miscalibrated logits (each label shifted): the tuned thresholds beat logit 0 on both metrics, and no random
    perturbation of them does better (they are optimal, measured with the quality module's own F1)."""
    generator = np.random.default_rng(3)
    rows, labels = 400, 15
    targets = generator.random((rows, labels)) < generator.uniform(0.05, 0.4, size=labels)
    logits = 2.0 * targets + generator.standard_normal((rows, labels)) - generator.uniform(-1, 3, size=labels)
    for metric, measure in (("micro_f1", micro_f1), ("macro_f1", macro_f1)):
        tuned = tune_thresholds(logits, targets, metric)
        best = measure(logits > tuned.thresholds, targets)
        assert best == pytest.approx(tuned.value, abs=1e-12)
        assert best > measure(logits > 0.0, targets) + 0.05
        for _ in range(200):
            moved = tuned.thresholds + generator.normal(0.0, 0.3, size=labels) * (generator.random(labels) < 0.3)
            assert measure(logits > moved, targets) <= best + 1e-12


def test_labels_without_positives_get_the_fallback() -> None:
    generator = np.random.default_rng(4)
    logits = generator.standard_normal((50, 4))
    targets = np.zeros((50, 4), dtype=bool)
    targets[:20, 0] = True
    targets[:1, 1] = True  # one positive: tuned at min_positives=1, a fallback label at 2
    for fallback, expected in (("zero", 0.0), ("global", best_uniform_threshold(logits, targets, "micro_f1"))):
        tuned = tune_thresholds(logits, targets, "macro_f1", fallback=fallback, min_positives=2)
        assert tuned.fallback_labels == [1, 2, 3]
        assert tuned.fallback_threshold == expected
        assert np.all(tuned.thresholds[1:] == expected)
    assert tune_thresholds(logits, targets, "macro_f1").fallback_labels == [2, 3]
    with pytest.raises(ValueError, match="no positive label"):
        tune_thresholds(logits, np.zeros_like(targets), "micro_f1")
    with pytest.raises(ValueError, match="metric must be one of"):
        tune_thresholds(logits, targets, "accuracy")


def test_projection_is_the_least_squares_fit_in_the_column_space() -> None:
    generator = np.random.default_rng(5)
    weight = generator.standard_normal((9, 3))
    inside = weight @ np.array([0.5, -1.0, 2.0])
    shift, projected = project_thresholds(weight, inside)
    assert np.allclose(shift, [0.5, -1.0, 2.0]) and np.allclose(projected, inside)
    outside = generator.standard_normal(9)
    shift, projected = project_thresholds(weight, outside)
    assert np.allclose(weight.T @ (outside - projected), 0.0, atol=1e-12)  # the residual is orthogonal to W


# ----------------------------------------------------------------------------------------------------------------
# Checkpoints: storing, applying, keeping the guarantee
# ----------------------------------------------------------------------------------------------------------------


def build_checkpoint(folder: Path, head_kind: str = "dft", seed: int = 0) -> Path:
    """A tiny BERT (hidden 32) with a head over 12 labels (k = 2), saved with a tokenizer."""
    torch.manual_seed(seed)
    encoder = BertModel(
        BertConfig(
            vocab_size=len(WORDS), hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37
        )
    )
    model = DFTForMultiLabelClassification.from_encoder(
        encoder, id2label=dict(enumerate(LABELS)), k=K, head_kind=head_kind, bottleneck_dim=4
    )
    with torch.no_grad():  # logits of a few units: several labels per text, and room to tune
        for parameter in model.head.parameters():
            parameter.normal_(0.0, 1.0)
    model.eval().save_pretrained(folder)
    BertTokenizerFast(vocab={word: i for i, word in enumerate(WORDS)}).save_pretrained(folder)
    return folder


def write_split(path: Path, label_sets: list[tuple[int, ...]], seed: int) -> Path:
    generator = np.random.default_rng(seed)
    with open(path, "w") as handle:
        for label_set in label_sets:
            text = " ".join(generator.choice(WORDS[5:], size=5))
            handle.write(json.dumps({"text": text, "labels": [LABELS[i] for i in label_set]}) + "\n")
    return path


def random_sets(seed: int, count: int) -> list[tuple[int, ...]]:
    generator = np.random.default_rng(seed)
    return [
        tuple(sorted(generator.choice(N_LABELS, size=int(generator.integers(0, 4)), replace=False).tolist()))
        for _ in range(count)
    ]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("threshold_data")
    return {
        "train": write_split(root / "train.jsonl", random_sets(10, 40), 10),
        "validation": write_split(root / "validation.jsonl", random_sets(11, 60), 11),
        "test": write_split(root / "test.jsonl", random_sets(12, 30), 12),
    }


def data_files(data: dict[str, Path], *splits: str) -> list[str]:
    return [f"{split}={data[split]}" for split in splits or ("train", "validation", "test")]


def run_cli(*argv: str) -> int:
    return cli.main([str(arg) for arg in argv])


def test_tuned_thresholds_go_into_the_config_and_predict_applies_them(tmp_path, data, capsys) -> None:
    checkpoint = build_checkpoint(tmp_path / "raw")
    config_before = (checkpoint / "config.json").read_bytes()
    tuned = tmp_path / "tuned"
    code = run_cli("tune-thresholds", checkpoint, "--data-files", *data_files(data), "--output-dir", tuned, "--quiet")
    assert code == 0
    assert "per_label  micro-F1" in capsys.readouterr().out
    assert (checkpoint / "config.json").read_bytes() == config_before  # the original is untouched
    record = json.loads((tuned / THRESHOLDS_RECORD).read_text())
    thresholds = AutoConfig.from_pretrained(tuned).logit_thresholds
    assert thresholds == record["tuned_logit_thresholds"] and len(thresholds) == N_LABELS
    assert record["data"]["split"] == "validation" and record["data"]["examples"] == 60
    assert record["validation"]["per_label"]["micro_f1"] > record["validation"]["before"]["micro_f1"]
    # Weights, code and tokenizer are copied unchanged.
    for name in ("model.safetensors", "modeling.py", "tokenizer.json"):
        assert (tuned / name).read_bytes() == (checkpoint / name).read_bytes()

    model, tokenizer = load_checkpoint(tuned)
    texts = [json.loads(line)["text"] for line in data["test"].read_text().splitlines()]
    with torch.no_grad():
        logits = model(**tokenizer(texts, padding=True, return_tensors="pt")).logits.numpy()
    predictions = model.predict(texts, tokenizer, batch_size=len(texts))
    t = np.asarray(thresholds)
    assert any((row > t).sum() != (row > 0).sum() for row in logits)  # the thresholds change some sets
    for row, prediction in zip(logits, predictions):
        by_hand = [LABELS[i] for i in sorted(np.flatnonzero(row > t), key=lambda i: (-row[i], i))]
        assert prediction.labels == by_hand
        # Per-label thresholds keep every set with <= 2k sign changes outputtable (the head is linear in x), so the
        # flag stays the rule: counted here by hand in circle order (identity order in this checkpoint).
        on_circle = [int(v) for v in row > t]
        changes = sum(a != b for a, b in zip(on_circle, on_circle[1:]))
        assert prediction.within_guarantee is (changes <= 2 * K)
    # Evaluation and the audit score what the model predicts: the sets z > t, and the record's validation F1.
    split = audit.load_audit_split(dataset_spec(None, "validation", data_files=data_files(data)), LABELS)
    predicted = audit.predict_label_sets(model, tokenizer, split.texts, gold_sets=split.label_sets)
    with torch.no_grad():
        logits = model(**tokenizer(split.texts, padding=True, return_tensors="pt")).logits.numpy()
    assert predicted.label_sets == [tuple(np.flatnonzero(row > t).tolist()) for row in logits]
    for metric in ("micro_f1", "macro_f1"):
        assert predicted.quality[metric] == pytest.approx(record["validation"]["per_label"][metric], abs=1e-12)


def test_tuning_in_place_replaces_only_the_config(tmp_path, data) -> None:
    checkpoint = build_checkpoint(tmp_path / "ckpt")
    weights = (checkpoint / "model.safetensors").read_bytes()
    assert (
        run_cli("tune-thresholds", checkpoint, "--data-files", *data_files(data), "--metric", "macro_f1", "--quiet")
        == 0
    )
    assert (checkpoint / "model.safetensors").read_bytes() == weights
    record = json.loads((checkpoint / THRESHOLDS_RECORD).read_text())
    assert record["metric"] == "macro_f1"
    assert AutoConfig.from_pretrained(checkpoint).logit_thresholds == record["tuned_logit_thresholds"]


@pytest.mark.slow  # certifies (a child process runs the checkpoint's own code)
def test_keep_guarantee_moves_only_the_input_bias(tmp_path, data) -> None:
    """Logits become exactly z - W a (a: the bias shift actually stored), nothing else changes, no thresholds."""
    checkpoint = build_checkpoint(tmp_path / "raw")
    tuned = tmp_path / "kept"
    options = ThresholdOptions(keep_guarantee=True, output_dir=str(tuned))
    record = tune_checkpoint(checkpoint, dataset_spec(None, "validation", data_files=data_files(data)), options)
    assert AutoConfig.from_pretrained(tuned).logit_thresholds is None
    before, after = load_file(checkpoint / "model.safetensors"), load_file(tuned / "model.safetensors")
    assert set(before) == set(after)
    changed = [name for name in before if not np.array_equal(before[name], after[name])]
    assert changed == ["head.bias"]
    shift = np.asarray(record["projection"]["input_bias_shift"])
    assert np.array_equal(after["head.bias"], before["head.bias"] - shift.astype(np.float32))
    stored_shift = before["head.bias"].astype(np.float64) - after["head.bias"].astype(np.float64)

    raw = DFTForMultiLabelClassification.from_pretrained(checkpoint).double().eval()
    kept = DFTForMultiLabelClassification.from_pretrained(tuned).double().eval()
    weight, _ = raw.effective_head()
    features = torch.from_numpy(np.random.default_rng(6).standard_normal((16, 32)))
    with torch.no_grad():
        z_raw = raw(encoder_features=features).logits.numpy()
        z_kept = kept(encoder_features=features).logits.numpy()
    assert np.allclose(z_kept, z_raw - weight @ stored_shift, rtol=0, atol=1e-12)
    # The projection is the least-squares fit plus a uniform offset along G's constant column.
    tuned_t = np.asarray(record["tuned_logit_thresholds"])
    offset = record["projection"]["uniform_offset"]
    assert np.allclose(weight @ shift, weight @ np.linalg.lstsq(weight, tuned_t, rcond=None)[0] + offset, atol=1e-9)
    # The head is the same [G | S] with another input bias: certified, decided by the rule as before.
    written = certificate.certify(tuned, dataset_spec(None, "test", data_files=data_files(data)), progress=False)
    assert written["status"] == "certified", written["reasons_not_certified"]
    assert written["thresholds"]["kind"] == "none" and written["thresholds"]["rule_decides"] is True
    assert written["verifier"]["dft_max_abs_error"] is not None  # the DFT claim was made and checked


def test_keep_guarantee_needs_a_head_with_an_input_bias(tmp_path, data, capsys) -> None:
    checkpoint = build_checkpoint(tmp_path / "dense", head_kind="dense")
    config = (checkpoint / "config.json").read_bytes()
    code = run_cli("tune-thresholds", checkpoint, "--data-files", *data_files(data), "--keep-guarantee", "--quiet")
    assert code == 2 and "dense head" in capsys.readouterr().err
    assert (checkpoint / "config.json").read_bytes() == config and not (checkpoint / THRESHOLDS_RECORD).exists()


def test_a_stock_classifier_gets_thresholds_too(tmp_path, data, capsys) -> None:
    """Any multi-label checkpoint: the thresholds go into its (BERT) config, and the audit sees them."""
    torch.manual_seed(1)
    config = BertConfig(
        vocab_size=len(WORDS),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=37,
        id2label=dict(enumerate(LABELS)),
        problem_type="multi_label_classification",
    )
    stock = tmp_path / "stock"
    BertForSequenceClassification(config).eval().save_pretrained(stock)
    BertTokenizerFast(vocab={word: i for i, word in enumerate(WORDS)}).save_pretrained(stock)
    code = run_cli("tune-thresholds", stock, "--data-files", *data_files(data), "--keep-guarantee", "--quiet")
    assert code == 2 and "stock classifier" in capsys.readouterr().err
    tuned = tmp_path / "tuned"
    assert run_cli("tune-thresholds", stock, "--data-files", *data_files(data), "--output-dir", tuned, "--quiet") == 0
    record = json.loads((tuned / THRESHOLDS_RECORD).read_text())
    model, _ = load_checkpoint(tuned)
    assert type(model).__name__ == "BertForSequenceClassification"
    assert model.config.logit_thresholds == record["tuned_logit_thresholds"]
    head = find_sigmoid_head(model)
    assert head.kind == "stock" and head.thresholds_kind == "per_label" and not head.rule_applies
    weight, bias = head.decision_head()
    assert np.array_equal(bias, head.bias - np.asarray(record["tuned_logit_thresholds"]))


# ----------------------------------------------------------------------------------------------------------------
# Audit and certificate of a thresholded DFT head, against an independent LP
# ----------------------------------------------------------------------------------------------------------------

EVENS = (0, 2, 4, 6, 8, 10)  # 12 sign changes around the circle: beyond the rule's 2k = 4
ODDS = (1, 3, 5, 7, 9, 11)
GOLD_SETS = [(), (3,), (11,), (3, 11), (0, 1), (5, 6, 7), EVENS, ODDS, (0, 4, 8)]


def lp_radius(weight: np.ndarray, bias: np.ndarray, label_set: tuple[int, ...], box: float | None) -> float:
    """Independent reference (scipy's HiGHS): max r with sigma_i (w_i x + b_i) >= r |w_i|, |x|_inf <= box, r <= 1.

    ``box=None``: x free, which decides argmaxability over all of R^m (r > 0 iff the open region is non-empty).
    """
    n, m = weight.shape
    signs = -np.ones(n)
    signs[list(label_set)] = 1.0
    norms = np.linalg.norm(weight, axis=1)
    # variables (x, r): -sigma_i w_i x + |w_i| r <= sigma_i b_i
    a_ub = np.hstack([-signs[:, None] * weight, norms[:, None]])
    bounds = [(-box, box) if box is not None else (None, None)] * m + [(None, 1.0)]
    result = linprog(np.r_[np.zeros(m), -1.0], A_ub=a_ub, b_ub=signs * bias, bounds=bounds, method="highs")
    assert result.status == 0, result.message
    return -result.fun


@pytest.fixture(scope="module")
def thresholded(tmp_path_factory) -> dict:
    """A DFT checkpoint with per-label thresholds: -0.5 on the even labels, +0.5 on the odd ones, 1e7 on label 11
    (far beyond the audit's box), and a copy with +inf on label 11 instead."""
    root = tmp_path_factory.mktemp("thresholded")
    gold = write_split(root / "gold.jsonl", GOLD_SETS * 2, 20)
    folders = {}
    for name, last in (("finite", 1e7), ("infinite", np.inf)):
        folder = build_checkpoint(root / name)
        config = json.loads((folder / "config.json").read_text())
        t = [-0.5 if i % 2 == 0 else 0.5 for i in range(N_LABELS)]
        t[11] = last
        config["logit_thresholds"] = t
        (folder / "config.json").write_text(json.dumps(config, indent=2))
        folders[name] = folder
    return {"gold": gold, **folders}


def test_a_thresholded_dft_head_is_decided_by_lp_and_agrees_with_an_independent_lp(thresholded) -> None:
    model, _ = load_checkpoint(thresholded["finite"])
    head = find_sigmoid_head(model)
    assert head.thresholds_kind == "per_label" and not head.rule_applies
    results, settings = audit.verify_sets(head, GOLD_SETS, progress=False)
    assert settings["dft_max_abs_error"] is None  # no DFT claim: nothing was decided by the rule
    assert all(result.method != "rule" for result in results)
    weight, bias = head.weight, head.bias - head.logit_thresholds
    for result in results:
        free = lp_radius(weight, bias, result.labels, box=None)
        assert result.status == ("argmaxable" if free > 1e-9 else "unargmaxable"), result.labels
        if result.status == "argmaxable":
            in_box = lp_radius(weight, bias, result.labels, box=settings["box"])
            assert result.epsilon_argmaxable == (in_box >= settings["epsilon"] * settings["box"] * (1 - 1e-6))
    verdicts = {result.labels: result for result in results}
    # Thresholds lose no set of the raw head (it is linear in x: scale a witness), but label 11's threshold puts
    # its sets far outside the box, and they make a set beyond the rule outputtable (x = 0 gives the even labels).
    assert verdicts[(11,)].status == "argmaxable" and not verdicts[(11,)].epsilon_argmaxable
    assert lp_radius(weight, bias, (11,), box=settings["box"]) <= 0 < lp_radius(weight, bias, (11,), box=None)
    assert verdicts[EVENS].status == "argmaxable"
    raw = audit.verify_sets(dataclasses.replace(head, logit_thresholds=None), [EVENS], progress=False)[0]
    assert raw[0].status == "unargmaxable"  # the raw head cannot (12 sign changes > 2k)


@pytest.mark.slow  # certifies (a child process runs the checkpoint's own code)
def test_the_certificate_of_finite_thresholds_keeps_the_guarantee_and_verifies(thresholded) -> None:
    folder = thresholded["finite"]
    written = certificate.certify(folder, dataset_spec(str(thresholded["gold"]), "test"), progress=False)
    assert written["status"] == "certified", written["reasons_not_certified"]
    section = written["thresholds"]
    assert section["kind"] == "per_label" and section["finite"] and section["guarantee_covers_predictions"]
    assert section["rule_decides"] is False and "max|t| / delta" in section["statement"]
    assert written["audit"]["thresholds"]["lost_gold_sets"] == 0
    assert "z_i > logit_thresholds[i]" in written["audit"]["prediction"]["rule"]
    result = certificate.verify_checkpoint(folder, progress=False)
    assert result.outcome == certificate.VERIFIED, result.summary()
    # The card push renders tells a user that sigmoid > 0.5 is not how this model decides.
    card = str(render_model_card(**read_card_inputs(folder), repo_id="alice/tuned"))
    assert "config.logit_thresholds[i]" in card and "threshold (`logit_thresholds`)" in card


@pytest.mark.slow  # certifies (a child process runs the checkpoint's own code)
def test_infinite_thresholds_lose_sets_and_are_not_certified(thresholded) -> None:
    """+inf never predicts label 11: {11} and {3, 11}, which the raw head outputs (<= k labels), are lost."""
    folder = thresholded["infinite"]
    model, _ = load_checkpoint(folder)
    head = find_sigmoid_head(model)
    raw = audit.verify_sets(dataclasses.replace(head, logit_thresholds=None), [(11,), (3, 11)], progress=False)[0]
    assert [r.status for r in raw] == ["argmaxable", "argmaxable"]
    written = certificate.certify(folder, dataset_spec(str(thresholded["gold"]), "test"), progress=False)
    assert written["status"] == "not_certified"
    lost = written["audit"]["thresholds"]
    assert lost["lost_gold_sets"] >= 2
    assert {tuple(e["label_ids"]) for e in lost["lost_examples"]} >= {(11,), (3, 11)}
    assert any("infinite logit_thresholds" in reason for reason in written["reasons_not_certified"])
    assert any("{tag_11}" in reason for reason in written["reasons_not_certified"])
    result = certificate.verify_checkpoint(folder, progress=False)
    assert result.outcome == certificate.VERIFIED and result.status == "not_certified", result.summary()
    # The thresholds are bound (config.json): changing one is a mismatch, not a new truth.
    config = json.loads((folder / "config.json").read_text())
    config["logit_thresholds"][11] = 0.0
    (folder / "config.json").write_text(json.dumps(config))
    assert any("config.json" in m for m in certificate.verify_checkpoint(folder, progress=False).mismatches)


# ----------------------------------------------------------------------------------------------------------------
# Bad input: exit code 2, nothing written
# ----------------------------------------------------------------------------------------------------------------


def test_bad_input_exits_2_and_writes_nothing(tmp_path, data, capsys) -> None:
    checkpoint = build_checkpoint(tmp_path / "ckpt")
    files = sorted(p.name for p in checkpoint.iterdir())
    config = (checkpoint / "config.json").read_bytes()

    def refused(*argv: str, says: str) -> None:
        assert run_cli("tune-thresholds", checkpoint, *argv, "--quiet") == 2
        assert says in capsys.readouterr().err
        assert sorted(p.name for p in checkpoint.iterdir()) == files
        assert (checkpoint / "config.json").read_bytes() == config

    refused("--data-files", *data_files(data, "train", "test"), says="needs a validation split")
    refused("--data-files", *data_files(data), "--metric", "accuracy", says="--metric must be one of")
    refused("--data-files", *data_files(data), "--fallback", "median", says="--fallback must be one of")
    refused("--data-files", *data_files(data), "--min-positives", "0", says="--min-positives must be >= 1")
    refused(says="training_args.json")  # no data named and no training record to take it from
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "keep.txt").write_text("mine")
    refused("--data-files", *data_files(data), "--output-dir", str(occupied), says="not an empty folder")
    assert (occupied / "keep.txt").read_text() == "mine"
    (checkpoint / certificate.CERTIFICATE_NAME).write_text("{}")
    files = sorted(p.name for p in checkpoint.iterdir())
    refused("--data-files", *data_files(data), says="holds a certificate")
    assert run_cli("tune-thresholds", tmp_path / "missing", "--quiet") == 2
    with pytest.raises(ValueError, match="never on split='test'"):
        tune_checkpoint(checkpoint, dataset_spec(None, "test", data_files=data_files(data)))
    shutil.rmtree(occupied)


@pytest.mark.slow  # three tuning runs of a checkpoint, each loading the data
def test_tune_checkpoint_streams_to_the_in_memory_tuner(tmp_path, data, monkeypatch) -> None:
    """The command's streaming passes -- logits kept in memory, or the model run again per pass -- give the record
    the in-memory tuner gives on the whole (N, n) validation logits and targets (same floats)."""
    checkpoint = build_checkpoint(tmp_path / "raw")
    spec = dataset_spec(None, "validation", data_files=data_files(data))
    model, tokenizer = load_checkpoint(checkpoint)
    split = audit.load_audit_split(spec, LABELS)
    with torch.no_grad():
        logits = model(**tokenizer(list(split.texts), padding=True, return_tensors="pt")).logits.numpy()
    logits = logits.astype(np.float64)
    targets = multi_hot_from_label_ids([list(s) for s in split.label_sets], N_LABELS)
    cached = thresholds_module.LOGIT_CACHE_ELEMENTS
    for metric, keep, cache in (("micro_f1", False, cached), ("micro_f1", False, 0), ("macro_f1", True, 0)):
        monkeypatch.setattr(thresholds_module, "LOGIT_CACHE_ELEMENTS", cache)
        output = tmp_path / f"{metric}-{keep}-{cache}"
        options = ThresholdOptions(metric=metric, keep_guarantee=keep, min_positives=6, batch_size=7)
        record = tune_checkpoint(checkpoint, spec, dataclasses.replace(options, output_dir=str(output)), progress=False)
        want = tune_thresholds(logits, targets, metric, min_positives=6)
        assert want.fallback_labels  # labels with < 6 positives: the global fallback is exercised
        assert record["tuned_logit_thresholds"] == want.thresholds.tolist()
        assert record["fallback"]["threshold"] == want.fallback_threshold
        decisions = logits > want.thresholds
        got = record["validation"]["per_label"]
        assert got == {"micro_f1": micro_f1(decisions, targets), "macro_f1": macro_f1(decisions, targets)}
        assert got[metric] == want.value
        if keep:
            weight = audit.find_sigmoid_head(model).weight
            shift, offset = column_space_shift(weight, want.thresholds, logits, targets, metric)
            assert record["projection"]["input_bias_shift"] == shift.tolist()
            assert record["projection"]["uniform_offset"] == offset
