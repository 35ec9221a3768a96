"""The argmaxability `evaluate` module, loaded with `evaluate.load` offline from a private HF_HOME."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from hf_dft_head.argmax import verify_label_sets
from hf_dft_head.argmax.radii import RADIUS_ROW_BUDGET
from hf_dft_head.gale import gale_matrix
from hf_dft_head.metrics import ARGMAXABILITY_METRIC


@pytest.fixture
def load_metric(tmp_path, monkeypatch):
    """`evaluate.load` with the Hub offline and HF_HOME (where evaluate copies modules) in tmp_path."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_EVALUATE_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    evaluate = pytest.importorskip("evaluate")
    # evaluate reads HF_HOME when it is first imported; point its caches at tmp_path for this test.
    monkeypatch.setattr(evaluate.config, "HF_MODULES_CACHE", tmp_path / "modules")
    monkeypatch.setattr(evaluate.config, "HF_METRICS_CACHE", tmp_path / "metrics")
    monkeypatch.setattr(evaluate.config, "HF_EVALUATE_OFFLINE", True)

    def load(config_name=None):
        metric = evaluate.load(ARGMAXABILITY_METRIC, config_name, cache_dir=str(tmp_path / "metrics"))
        copied = list(Path(tmp_path, "modules").rglob("argmaxability.py"))
        assert copied, "evaluate should copy the module under $HF_HOME/modules"
        return metric

    return load


LINE_W = np.ones((3, 1))
LINE_B = -np.array([1.0, 2.0, 3.0])  # z_i = x - (i + 1): only prefixes {}, {0}, {0,1}, {0,1,2} are argmaxable


def test_label_id_lists_on_a_hand_built_head(load_metric):
    metric = load_metric()
    references = [[0, 2], [0, 2], [0], [1], [0, 1, 2], []]
    predictions = [[0], [0, 1], [0], [0], [2], []]
    out = metric.compute(predictions=predictions, references=references, weight=LINE_W, bias=LINE_B, k=1)
    # Distinct gold sets: {0,2} no, {0} yes, {1} no, {0,1,2} yes, {} yes -> 3 of 5.
    assert out["references_sets"] == 5
    assert out["references_argmaxable"] == pytest.approx(3 / 5)
    assert out["references_unargmaxable_sets"] == 2 and out["references_undecided_sets"] == 0
    # By examples: {0,2} twice and {1} once are unreachable -> 3 of 6.
    assert out["references_argmaxable_examples"] == pytest.approx(3 / 6)
    # Buckets at k = 1: sizes <= 1 are {0}, {1}, {} (2 of 3 argmaxable); > 1 are {0,2}, {0,1,2} (1 of 2).
    assert out["references_size_le_k_sets"] == 3 and out["references_size_le_k_argmaxable"] == pytest.approx(2 / 3)
    assert out["references_size_gt_k_sets"] == 2 and out["references_size_gt_k_argmaxable"] == pytest.approx(1 / 2)
    # Predictions {0}, {0,1}, {2}, {}: {2} alone is not a prefix.
    assert out["predictions_sets"] == 4 and out["predictions_argmaxable"] == pytest.approx(3 / 4)
    assert out["k"] == 1 and out["num_labels"] == 3 and out["dim"] == 1
    radii = [out[f"references_relative_radius_q{q}"] for q in ("05", "25", "50", "75", "95")]
    assert all(r > 0 for r in radii) and radii == sorted(radii)


def test_multi_hot_config_matches_label_ids(load_metric):
    ids = load_metric()
    hot = load_metric("multi_hot")
    rng = np.random.default_rng(0)
    n, m = 30, 4
    weight = rng.standard_normal((n, m))
    bias = rng.standard_normal(n) - 2.5
    rows = (rng.random((25, n)) < 0.08).astype(np.int64)
    lists = [np.flatnonzero(r).tolist() for r in rows]
    a = ids.compute(predictions=lists[::-1], references=lists, weight=weight, bias=bias)
    b = hot.compute(predictions=rows[::-1], references=rows, weight=weight, bias=bias)
    assert a.keys() == b.keys()
    for key in a:
        assert a[key] == b[key] or (isinstance(a[key], float) and math.isnan(a[key]) and math.isnan(b[key]))
    # No k: one bucket per size.
    sizes = {len(s) for s in lists}
    assert all(f"references_size_{s}_sets" in a for s in sizes)
    assert a["references_argmaxable"] < 1.0  # 30 labels in 4 dims: some gold sets are unreachable


def test_dft_head_rule_and_epsilon(load_metric):
    """Pure DFT head: every set of <= k labels is argmaxable; the share above k follows the rule."""
    metric = load_metric()
    n, k = 16, 2
    weight = gale_matrix(n, k)
    small = [[0], [3, 9], [5, 6], []]
    large = [[0, 4, 8], [1, 2, 3], [0, 5, 10, 15]]  # 6 changes (no), 2 changes (yes), 7 changes (no)
    predictions = small + [[1], [2, 3], [7]]  # one prediction per example: all of at most k labels
    out = metric.compute(predictions=predictions, references=small + large, weight=weight, dft_k=k)
    assert out["references_size_le_k_argmaxable"] == 1.0
    assert out["references_size_gt_k_argmaxable"] == pytest.approx(1 / 3)
    assert out["predictions_argmaxable"] == 1.0
    assert out["references_epsilon_argmaxable"] == pytest.approx(5 / 7)
    # A huge epsilon makes no set epsilon-argmaxable, without changing the verdicts.
    strict = metric.compute(predictions=small, references=small, weight=weight, dft_k=k, epsilon=0.9)
    assert strict["references_argmaxable"] == 1.0 and strict["references_epsilon_argmaxable"] == 0.0


def test_bad_input_is_reported(load_metric):
    metric = load_metric()
    with pytest.raises(ValueError, match="references: label set 1 contains label id 3"):
        metric.compute(predictions=[[0], [1]], references=[[0], [3]], weight=LINE_W, bias=LINE_B)
    with pytest.raises(ValueError, match="weight=W"):
        metric.compute(predictions=[[0]], references=[[0]])
    hot = load_metric("multi_hot")
    with pytest.raises(ValueError, match="multi-hot row 0 has value 0.5"):
        hot.compute(predictions=[[1, 0, 0]], references=[[0.5, 0, 0]], weight=LINE_W, bias=LINE_B)


def test_model_argument_uses_the_models_own_head(load_metric):
    """compute(model=...) decides in the head's own space: a DFT model's every <= k set, a rank-1 stock head's few."""
    import torch
    from conftest import tiny_encoder_config
    from transformers import AutoModel, BertForSequenceClassification

    from hf_dft_head import DFTForMultiLabelClassification

    torch.manual_seed(0)
    n, k = 12, 2
    model = DFTForMultiLabelClassification.from_encoder(
        AutoModel.from_config(tiny_encoder_config("bert")), num_labels=n, k=k
    )
    metric = load_metric()
    # sign changes in circle order: 2, 4, 2 (three labels, but one arc), 12 > 2k = 4
    sets = [[0], [3, 7], [1, 2, 3], [0, 2, 4, 6, 8, 10]]
    out = metric.compute(predictions=[[0], [3, 7], [3, 7], []], references=sets, model=model)
    assert out["k"] == k and out["num_labels"] == n and out["dim"] == 2 * k + 1
    assert out["references_argmaxable"] == pytest.approx(0.75)  # exactly the rule's verdicts
    assert out["predictions_argmaxable"] == 1.0

    config = tiny_encoder_config("bert")
    config.num_labels, config.problem_type = 3, "multi_label_classification"
    stock = BertForSequenceClassification(config)
    with torch.no_grad():  # rank-1 head on a line: z_i = x - (i + 1), as LINE_W / LINE_B above
        stock.classifier.weight.zero_()
        stock.classifier.weight[:, 0] = 1.0
        stock.classifier.bias.copy_(torch.tensor([-0.1, -0.2, -0.3]))
    out = metric.compute(predictions=[[0], []], references=[[0, 1], [0, 2]], model=stock)
    assert out["references_argmaxable"] == 0.5 and out["references_unargmaxable_sets"] == 1
    with pytest.raises(ValueError, match="either model= or weight="):
        metric.compute(predictions=[[0]], references=[[0]], model=stock, weight=LINE_W)


def test_radius_policy_of_the_audit(load_metric):
    """Radii as hf-dft audit computes them: all on a small problem, a seeded sample beyond the row budget, none on
    request; the verdicts never depend on it. Reference: the engine run with a radius for every set."""
    metric = load_metric()
    n, k = 3000, 2
    weight = gale_matrix(n, k)
    sets = [[i, i + 1] for i in range(0, 200, 2)] + [[0, 1000, 2000]]  # 100 rule-decided yes, one rule no
    assert len(sets) * n > RADIUS_ROW_BUDGET
    auto = metric.compute(predictions=sets, references=sets, weight=weight, dft_k=k)
    assert auto["radius_computed_for"] == "sample" and auto["radius_sets"] == RADIUS_ROW_BUDGET // n == 83
    assert auto["references_argmaxable"] == pytest.approx(100 / 101)
    # The sample's sets are epsilon-argmaxable, the others count as not (no radius): a lower bound.
    assert auto["references_epsilon_argmaxable"] == pytest.approx(83 / 101)
    two = metric.compute(predictions=sets, references=sets, weight=weight, dft_k=k, radii=2, radius_seed=5)
    assert two["radius_computed_for"] == "sample" and two["radius_sets"] == 2
    none = metric.compute(predictions=sets, references=sets, weight=weight, dft_k=k, radii="none")
    assert none["radius_computed_for"] == "none" and none["radius_sets"] == 0
    assert none["references_epsilon_argmaxable"] == 0.0 and math.isnan(none["references_relative_radius_q50"])
    for out in (two, none):
        assert out["references_argmaxable"] == auto["references_argmaxable"]
    small = sets[:5]
    everything = metric.compute(predictions=small, references=small, weight=weight, dft_k=k, radii="all")
    assert everything["radius_computed_for"] == "all" and everything["radius_sets"] == 5
    reference = verify_label_sets(weight, None, small, dft_k=k, rule_only=False)
    radii = sorted(v.relative_radius for v in reference.verdicts)
    assert everything["references_relative_radius_q50"] == pytest.approx(float(np.quantile(radii, 0.5)))
    with pytest.raises(ValueError, match="radii must be"):
        metric.compute(predictions=small, references=small, weight=weight, dft_k=k, radii="some")
