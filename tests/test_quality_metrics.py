"""Multi-label quality metrics against scikit-learn, hand-computed cases and a naive per-row loop."""

import json
import math
import os
import subprocess
import sys
import textwrap
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, ndcg_score, precision_score, recall_score

from hf_dft_head.metrics import quality
from hf_dft_head.metrics.quality import (
    exact_match,
    f1_at_k,
    macro_f1,
    micro_f1,
    multi_hot_from_label_ids,
    multilabel_quality_report,
    ndcg_at_k,
    precision_at_k,
    recall_at_k,
    threshold_predictions,
    top_k_label_ids,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
METRIC_DIR = Path(quality.__file__).resolve().parent / "multilabel_quality"


# ---------------------------------------------------------------------------------------------------------
# Independent reference: one example at a time, plain Python, no numpy ranking
# ---------------------------------------------------------------------------------------------------------


def naive_row_metrics(score_row, gold_row, k):
    """P@k, R@k, nDCG@k of one example; ties broken by the smaller label id."""
    order = sorted(range(len(score_row)), key=lambda j: (-float(score_row[j]), j))[:k]
    gold = {j for j, g in enumerate(gold_row) if g}
    hits = [j in gold for j in order]
    precision = sum(hits) / k
    recall = sum(hits) / len(gold) if gold else 0.0
    dcg = sum(1.0 / math.log2(rank + 2) for rank, hit in enumerate(hits) if hit)
    ideal = sum(1.0 / math.log2(rank + 2) for rank in range(min(k, len(gold))))
    return precision, recall, (dcg / ideal if ideal else 0.0), bool(gold)


def naive_at_k(scores, targets, k, empty_rows="zero"):
    rows = [naive_row_metrics(s, t, k) for s, t in zip(scores.tolist(), targets.tolist(), strict=True)]
    if empty_rows == "skip":
        rows = [r for r in rows if r[3]]
    p = sum(r[0] for r in rows) / len(rows)
    r = sum(r[1] for r in rows) / len(rows)
    n = sum(r[2] for r in rows) / len(rows)
    return p, r, (2 * p * r / (p + r) if p + r else 0.0), n


def random_problem(rng, n_rows, n_labels, *, tied=False, empty_share=0.25, density=0.2):
    if tied:
        scores = rng.integers(0, 4, size=(n_rows, n_labels)).astype(np.float64)  # many ties
    else:
        scores = rng.standard_normal((n_rows, n_labels))
    targets = (rng.random((n_rows, n_labels)) < density).astype(np.int64)
    targets[rng.random(n_rows) < empty_share] = 0  # rows with no gold label
    return scores, targets


# ---------------------------------------------------------------------------------------------------------
# Hand-computed cases
# ---------------------------------------------------------------------------------------------------------

# Row 0: three-way tie at 0.7 on labels 1, 2, 3 (gold {3}); row 1: no ties (gold {0, 3, 4}); row 2: all
# scores equal and no gold label.
HAND_SCORES = np.array(
    [
        [0.1, 0.7, 0.7, 0.7, 0.0],
        [3.0, 1.0, 2.0, 0.0, -1.0],
        [0.0, 0.0, 0.0, 0.0, 0.0],
    ]
)
HAND_TARGETS = np.array(
    [
        [0, 0, 0, 1, 0],
        [1, 0, 0, 1, 1],
        [0, 0, 0, 0, 0],
    ]
)


def test_top_k_breaks_ties_by_label_id():
    assert top_k_label_ids(HAND_SCORES, 3).tolist() == [[1, 2, 3], [0, 2, 1], [0, 1, 2]]
    assert top_k_label_ids(HAND_SCORES, 2).tolist() == [[1, 2], [0, 2], [0, 1]]
    assert top_k_label_ids(HAND_SCORES, 1).tolist() == [[1], [0], [0]]
    # k > n returns every label, in rank order.
    assert top_k_label_ids(HAND_SCORES, 9).tolist() == [[1, 2, 3, 0, 4], [0, 2, 1, 3, 4], [0, 1, 2, 3, 4]]
    # Tie straddling the cut: 0.5 appears on labels 4, 1, 6 (ids out of order); two of them fit.
    scores = np.array([[0.9, 0.5, 0.1, 0.8, 0.5, 0.2, 0.5]])
    assert top_k_label_ids(scores, 4).tolist() == [[0, 3, 1, 4]]
    assert top_k_label_ids(-np.inf * np.ones((1, 4)), 2).tolist() == [[0, 1]]


def test_at_k_metrics_on_hand_computed_case():
    # k=1: hits (0, 1, 0). k=3: row 0 ranks [1, 2, 3] -> 1 hit of |y|=1; row 1 ranks [0, 2, 1] -> 1 of 3.
    assert precision_at_k(HAND_SCORES, HAND_TARGETS, 1) == pytest.approx(1 / 3)
    assert recall_at_k(HAND_SCORES, HAND_TARGETS, 1) == pytest.approx(1 / 9)
    assert precision_at_k(HAND_SCORES, HAND_TARGETS, 3) == pytest.approx(2 / 9)
    assert recall_at_k(HAND_SCORES, HAND_TARGETS, 3) == pytest.approx(4 / 9)  # k > |y| on row 0: recall 1
    assert f1_at_k(HAND_SCORES, HAND_TARGETS, 3) == pytest.approx(8 / 27)  # 2 (2/9)(4/9) / (6/9)
    ndcg_row0 = 1 / math.log2(4)  # the single gold label at rank 3, ideal DCG 1
    ndcg_row1 = 1 / (1 + 1 / math.log2(3) + 1 / math.log2(4))  # hit at rank 1 of 3 possible
    assert ndcg_at_k(HAND_SCORES, HAND_TARGETS, 3) == pytest.approx((ndcg_row0 + ndcg_row1 + 0) / 3)
    # k=7 > n=5: P@k keeps denominator k (row 0 has 1 hit, row 1 all 3); recall is complete.
    assert precision_at_k(HAND_SCORES, HAND_TARGETS, 7) == pytest.approx((1 / 7 + 3 / 7) / 3)
    assert recall_at_k(HAND_SCORES, HAND_TARGETS, 7) == pytest.approx(2 / 3)
    # empty_rows="skip" drops row 2 from the means.
    assert precision_at_k(HAND_SCORES, HAND_TARGETS, 3, empty_rows="skip") == pytest.approx(1 / 3)
    assert recall_at_k(HAND_SCORES, HAND_TARGETS, 3, empty_rows="skip") == pytest.approx(2 / 3)
    assert f1_at_k(HAND_SCORES, HAND_TARGETS, 3, empty_rows="skip") == pytest.approx(4 / 9)
    assert ndcg_at_k(HAND_SCORES, HAND_TARGETS, 3, empty_rows="skip") == pytest.approx((ndcg_row0 + ndcg_row1) / 2)
    # Only empty rows: 0 by default, undefined when they are skipped.
    assert precision_at_k(HAND_SCORES[2:], HAND_TARGETS[2:], 2) == 0.0
    assert math.isnan(recall_at_k(HAND_SCORES[2:], HAND_TARGETS[2:], 2, empty_rows="skip"))


def test_threshold_metrics_on_hand_computed_case():
    logits = np.array([[2.0, -1.0, 0.0], [-3.0, 4.0, 1.0], [-1.0, -2.0, -0.5]])
    gold = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 0]])
    # Logit 0 is probability 0.5, not above the threshold: predictions {0}, {1, 2}, {}.
    assert threshold_predictions(logits).tolist() == [[True, False, False], [False, True, True], [False] * 3]
    assert exact_match(logits, gold) == pytest.approx(2 / 3)  # rows 0 and 2 (empty = empty)
    # tp=2, fp=1, fn=0 -> 4 / 5; per label: 1, 1, and label 2 has tp=0, fp=1 -> 0.
    assert micro_f1(logits, gold) == pytest.approx(4 / 5)
    assert macro_f1(logits, gold) == pytest.approx(2 / 3)
    # Probability threshold 0.3 is logit -0.847: label 2 of rows 0 (logit 0) and 2 (logit -0.5) become false
    # positives too: tp=2, fp=3, fn=0 -> 4 / 7.
    assert micro_f1(logits, gold, threshold=0.3) == pytest.approx(4 / 7)
    probabilities = 1 / (1 + np.exp(-logits))
    assert micro_f1(probabilities, gold, threshold=0.3, scores_are_logits=False) == pytest.approx(4 / 7)
    # A bool matrix is taken as the predicted sets themselves.
    assert exact_match(gold.astype(bool), gold) == 1.0
    # A label never gold nor predicted: zero_division decides, as in sklearn.
    silent_logits = np.array([[1.0, -1.0], [-1.0, -1.0]])
    silent_gold = np.array([[1, 0], [0, 0]])
    assert macro_f1(silent_logits, silent_gold) == 0.5
    assert macro_f1(silent_logits, silent_gold, zero_division=1.0) == 1.0
    assert macro_f1(silent_logits, silent_gold, zero_division=np.nan) == 1.0
    assert micro_f1(-np.ones((2, 2)), np.zeros((2, 2)), zero_division=1.0) == 1.0


def test_threshold_on_logits_is_the_logit_of_the_probability():
    # logit(0.3) = log(0.3 / 0.7) = -0.8473: a label is predicted strictly above it.
    logits = np.array([[-0.84, -0.85, math.log(0.3 / 0.7) + 1e-12, 0.0]])
    assert threshold_predictions(logits, threshold=0.3).tolist() == [[True, False, True, True]]
    assert threshold_predictions(logits, threshold=0.5).tolist() == [[False, False, False, False]]
    probabilities = np.array([[0.3, 0.3000001, 0.5, 0.51]])
    assert threshold_predictions(probabilities, threshold=0.3, scores_are_logits=False).tolist() == [
        [False, True, True, True]
    ]


# ---------------------------------------------------------------------------------------------------------
# Random comparisons: naive loop, scikit-learn
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("empty_rows", ["zero", "skip"])
def test_at_k_matches_naive_loop(tied, empty_rows, monkeypatch):
    rng = np.random.default_rng(7 + tied)
    scores, targets = random_problem(rng, 97, 13, tied=tied)
    # Small chunks: many chunk boundaries, tied and untied rows mixed within a chunk.
    monkeypatch.setattr(quality, "_CHUNK_ELEMENTS", 50)
    for k in (1, 2, 5, 13, 20):
        p, r, f, n = naive_at_k(scores, targets, k, empty_rows)
        assert precision_at_k(scores, targets, k, empty_rows=empty_rows) == pytest.approx(p, abs=1e-12)
        assert recall_at_k(scores, targets, k, empty_rows=empty_rows) == pytest.approx(r, abs=1e-12)
        assert f1_at_k(scores, targets, k, empty_rows=empty_rows) == pytest.approx(f, abs=1e-12)
        assert ndcg_at_k(scores, targets, k, empty_rows=empty_rows) == pytest.approx(n, abs=1e-12)
    report = multilabel_quality_report(scores, targets, ks=(1, 2, 5, 20), empty_rows=empty_rows)
    for k in (1, 2, 5, 20):
        p, r, f, n = naive_at_k(scores, targets, k, empty_rows)
        assert [report[f"p@{k}"], report[f"r@{k}"], report[f"f1@{k}"], report[f"ndcg@{k}"]] == pytest.approx(
            [p, r, f, n], abs=1e-12
        )


def test_top_k_matches_stable_sort_on_ties(monkeypatch):
    rng = np.random.default_rng(3)
    scores = rng.integers(-2, 3, size=(300, 40)).astype(np.float32)
    monkeypatch.setattr(quality, "_CHUNK_ELEMENTS", 1000)
    reference = np.argsort(-scores, axis=1, kind="stable")  # descending score, then ascending label id
    for k in (1, 7, 39, 40, 55):
        np.testing.assert_array_equal(top_k_label_ids(scores, k), reference[:, :k])
    # Integer and bool score matrices rank like their float values.
    np.testing.assert_array_equal(top_k_label_ids(scores.astype(np.int16), 7), reference[:, :7])


@pytest.mark.parametrize("k", [1, 3, 5, 12])
def test_at_k_matches_sklearn(k):
    rng = np.random.default_rng(11)
    scores, targets = random_problem(rng, 400, 12)  # continuous scores: no ties
    # sklearn ndcg_score gives 0 to rows without gold labels, as empty_rows="zero" does.
    assert ndcg_at_k(scores, targets, k) == pytest.approx(ndcg_score(targets, scores, k=k), abs=1e-12)
    # Every row predicts exactly k labels, so sample-averaged precision is P@k and recall is R@k
    # (recall 0/0 on rows without gold labels -> zero_division=0).
    top_k = np.zeros_like(targets)
    np.put_along_axis(top_k, np.argsort(-scores, axis=1)[:, :k], 1, axis=1)
    sk_p = precision_score(targets, top_k, average="samples", zero_division=0)
    sk_r = recall_score(targets, top_k, average="samples", zero_division=0)
    assert precision_at_k(scores, targets, k) == pytest.approx(sk_p, abs=1e-12)
    assert recall_at_k(scores, targets, k) == pytest.approx(sk_r, abs=1e-12)
    assert f1_at_k(scores, targets, k) == pytest.approx(2 * sk_p * sk_r / (sk_p + sk_r), abs=1e-12)


@pytest.mark.parametrize("zero_division", [0.0, 1.0, np.nan])
@pytest.mark.parametrize("threshold", [0.5, 0.3, 0.8])
def test_threshold_metrics_match_sklearn(zero_division, threshold, monkeypatch):
    rng = np.random.default_rng(5)
    logits = rng.standard_normal((250, 20)) * 2
    targets = (rng.random((250, 20)) < 0.15).astype(np.int64)
    targets[:, [3, 7]] = 0  # labels never gold
    logits[:, 7] = -10.0  # ... and one of them never predicted either: undefined F1
    targets[rng.random(250) < 0.3] = 0
    monkeypatch.setattr(quality, "_CHUNK_ELEMENTS", 333)
    probabilities = 1 / (1 + np.exp(-logits))
    predicted = probabilities > threshold  # sklearn's input, built from probabilities independently
    for name, average in (("micro_f1", "micro"), ("macro_f1", "macro")):
        expected = f1_score(targets, predicted, average=average, zero_division=zero_division)
        metric = getattr(quality, name)
        from_logits = metric(logits, targets, threshold=threshold, zero_division=zero_division)
        from_probabilities = metric(
            probabilities, targets, threshold=threshold, scores_are_logits=False, zero_division=zero_division
        )
        assert from_logits == pytest.approx(expected, abs=1e-12)
        assert from_probabilities == pytest.approx(expected, abs=1e-12)
    assert exact_match(logits, targets, threshold=threshold) == pytest.approx(accuracy_score(targets, predicted))
    report = multilabel_quality_report(logits, targets, threshold=threshold, zero_division=zero_division)
    assert report["macro_f1"] == pytest.approx(
        f1_score(targets, predicted, average="macro", zero_division=zero_division)
    )
    assert report["exact_match"] == pytest.approx(accuracy_score(targets, predicted))


def test_report_keys_and_consistency_with_single_metrics():
    rng = np.random.default_rng(2)
    scores, targets = random_problem(rng, 60, 9)
    report = multilabel_quality_report(scores, targets, ks=(1, 3, 5))
    expected_keys = [f"{m}@{k}" for k in (1, 3, 5) for m in ("p", "r", "f1", "ndcg")]
    assert list(report) == [*expected_keys, "micro_f1", "macro_f1", "exact_match"]
    assert all(isinstance(v, float) for v in report.values())
    assert report["p@3"] == precision_at_k(scores, targets, 3)
    assert report["ndcg@5"] == ndcg_at_k(scores, targets, 5)
    assert report["micro_f1"] == micro_f1(scores, targets)
    assert report["exact_match"] == exact_match(scores, targets)


def test_multi_hot_from_label_ids():
    multi_hot = multi_hot_from_label_ids([[2, 0], [], [4]], num_labels=5)
    assert multi_hot.tolist() == [[1, 0, 1, 0, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 1]]
    assert multi_hot_from_label_ids(np.array([[1], [0]]), 2).tolist() == [[0, 1], [1, 0]]


def test_large_input_stays_in_chunked_memory():
    # 400 x 50k float32 scores (80 MB): a (B, n) int64 argpartition alone would allocate 160 MB.
    rng = np.random.default_rng(0)
    scores = rng.standard_normal((400, 50_000), dtype=np.float32)
    targets = np.zeros(scores.shape, dtype=np.uint8)
    gold_ids = rng.integers(0, 50_000, size=(400, 4))
    np.put_along_axis(targets, gold_ids, 1, axis=1)
    tracemalloc.start()
    try:
        report = multilabel_quality_report(scores, targets, ks=(1, 5))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 80e6, f"peak extra memory {peak / 1e6:.0f} MB"
    # Spot check on a few rows against the naive loop.
    p, r, _, n = naive_at_k(scores[:5], targets[:5], 5)
    assert multilabel_quality_report(scores[:5], targets[:5], ks=(5,))["ndcg@5"] == pytest.approx(n)
    assert 0.0 <= report["p@5"] <= 1.0


# ---------------------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: precision_at_k(np.zeros((2, 3)), np.zeros((2, 4)), 1), r"targets has shape \(2, 4\)"),
        (lambda: recall_at_k(np.zeros(3), np.zeros(3), 1), r"scores must be a 2-D"),
        (lambda: precision_at_k(np.zeros((0, 3)), np.zeros((0, 3)), 1), r"scores has shape \(0, 3\)"),
        (lambda: ndcg_at_k(np.zeros((2, 3)), np.array([[0, 1, 0], [0, 2, 0]]), 1), r"targets .*row 1, label 1"),
        (lambda: micro_f1(np.zeros((2, 3)), np.array([[0, 0.5, 0], [0, 1, 0]])), r"targets .*row 0, label 1"),
        (lambda: precision_at_k(np.zeros((2, 3)), np.zeros((2, 3)), 0), r"k must be >= 1"),
        (lambda: precision_at_k(np.zeros((2, 3)), np.zeros((2, 3)), 1.5), r"k must be an integer"),
        (lambda: multilabel_quality_report(np.zeros((2, 3)), np.zeros((2, 3)), ks=(1, 0)), r"ks\[1\]"),
        (lambda: multilabel_quality_report(np.zeros((2, 3)), np.zeros((2, 3)), ks=()), r"ks is empty"),
        (lambda: f1_at_k(np.array([[0, 1.0], [np.nan, 0]]), np.zeros((2, 2)), 1), r"scores row 1 contains NaN"),
        (lambda: macro_f1(np.zeros((2, 3)), np.zeros((2, 3)), threshold=1.0), r"threshold"),
        (lambda: macro_f1(np.zeros((2, 3)), np.zeros((2, 3)), zero_division=0.5), r"zero_division"),
        (lambda: recall_at_k(np.zeros((2, 3)), np.zeros((2, 3)), 1, empty_rows="drop"), r"empty_rows"),
        (lambda: multi_hot_from_label_ids([[0], [3]], 3), r"label_ids row 1 holds label id 3"),
        (lambda: multi_hot_from_label_ids([[-1]], 3), r"label_ids row 0 holds label id -1"),
        (lambda: multi_hot_from_label_ids([[0], [1, 2, 1]], 3), r"label_ids row 1 repeats"),
        (lambda: multi_hot_from_label_ids([[0.5]], 3), r"label_ids must hold integer"),
        (lambda: multi_hot_from_label_ids([[0]], 0), r"num_labels"),
    ],
)
def test_bad_input_raises_value_error_naming_the_argument(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# ---------------------------------------------------------------------------------------------------------
# evaluate module: offline round trip in a clean process
# ---------------------------------------------------------------------------------------------------------

_ROUND_TRIP_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import evaluate
    import numpy as np

    path, data_file = sys.argv[1], sys.argv[2]
    data = np.load(data_file)
    scores, targets = data["scores"], data["targets"]
    out = {}
    metric = evaluate.load(path)  # config "multi_hot"
    half = len(scores) // 2
    metric.add_batch(predictions=scores[:half].tolist(), references=targets[:half].tolist())
    metric.add_batch(predictions=scores[half:].tolist(), references=targets[half:].tolist())
    out["multi_hot"] = metric.compute(ks=(1, 3), threshold=0.4, scores_are_logits=True)
    by_ids = evaluate.load(path, config_name="label_ids")
    label_ids = [np.flatnonzero(row).tolist() for row in targets]
    out["label_ids"] = by_ids.compute(predictions=scores.tolist(), references=label_ids, ks=(1, 3), threshold=0.4)
    try:
        metric.compute(predictions=scores.tolist(), references=(targets * 2).tolist())
    except ValueError as error:
        out["bad_targets"] = str(error)
    try:
        evaluate.load(path, config_name="bogus")
    except ValueError as error:
        out["bad_config"] = str(error)
    print("RESULT" + json.dumps(out))
    """
)


def _clean_env(tmp_path, pythonpath):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "PYTHONPATH"))}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf_home"), HF_DATASETS_OFFLINE="1")
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    return env


def test_metric_dir_matches_package_constant_if_defined():
    import hf_dft_head.metrics as metrics_package

    constant = getattr(metrics_package, "QUALITY_METRIC", None)
    if constant is not None:
        assert Path(constant).resolve() == METRIC_DIR
    assert (METRIC_DIR / "multilabel_quality.py").is_file()  # evaluate.load(dir) needs dir/<dirname>.py


def test_evaluate_load_round_trip_offline(tmp_path):
    rng = np.random.default_rng(9)
    scores, targets = random_problem(rng, 40, 8)
    np.savez(tmp_path / "data.npz", scores=scores, targets=targets)
    (tmp_path / "round_trip.py").write_text(_ROUND_TRIP_SCRIPT)
    # hf_dft_head importable through PYTHONPATH only (not installed), run from an unrelated directory.
    completed = subprocess.run(
        [sys.executable, "round_trip.py", str(METRIC_DIR), str(tmp_path / "data.npz")],
        cwd=tmp_path,
        env=_clean_env(tmp_path, str(REPO_ROOT)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads(completed.stdout.split("RESULT", 1)[1])
    expected = multilabel_quality_report(scores, targets, ks=(1, 3), threshold=0.4)
    assert result["multi_hot"] == pytest.approx(expected, abs=1e-12)
    assert result["label_ids"] == pytest.approx(expected, abs=1e-12)
    assert "targets must be multi-hot 0/1" in result["bad_targets"]
    assert "config_name must be one of" in result["bad_config"]
    # The module was copied under the temporary HF_HOME, not into the user's cache.
    assert list((tmp_path / "hf_home").rglob("multilabel_quality.py"))


def test_evaluate_load_declares_hf_dft_head_dependency(tmp_path):
    env = _clean_env(tmp_path, pythonpath=None)
    # The package is installed in the test environment: make it unimportable in the child instead.
    code = f"import sys; sys.modules['hf_dft_head'] = None; import evaluate; evaluate.load({str(METRIC_DIR)!r})"
    completed = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode != 0
    assert "hf_dft_head" in completed.stderr and "ImportError" in completed.stderr


def test_quality_module_is_pure_numpy():
    # Load the file on its own (not through the package __init__, which registers transformers classes).
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('quality', {str(Path(quality.__file__))!r})\n"
        "module = importlib.util.module_from_spec(spec); sys.modules['quality'] = module\n"
        "spec.loader.exec_module(module)\n"
        "print(sorted(m for m in ('torch', 'transformers', 'sklearn', 'scipy') if m in sys.modules))\n"
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "[]"


def test_label_ids_by_row_inverts_multi_hot_with_empty_rows():
    from hf_dft_head.metrics.quality import label_ids_by_row

    rng = np.random.default_rng(7)
    matrix = rng.random((9, 13)) < 0.3
    matrix[[0, 4, 8]] = False  # empty rows, first and last included
    got = label_ids_by_row(matrix)
    assert [ids.tolist() for ids in got] == [[j for j in range(13) if matrix[i, j]] for i in range(9)]
    assert all(ids.dtype == np.int64 for ids in got)
    assert np.array_equal(multi_hot_from_label_ids([ids.tolist() for ids in got], 13).astype(bool), matrix)
    assert [ids.tolist() for ids in label_ids_by_row(matrix.astype(np.float32))] == [ids.tolist() for ids in got]
    assert label_ids_by_row(np.zeros((0, 5), dtype=bool)) == []
