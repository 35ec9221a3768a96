"""Streaming evaluation: the training loop's ``evaluate`` and ``QualityAccumulator.add_ranked`` against the
in-memory report on the explicit (N, n) matrices (same floats), with rows without gold labels, tied logits,
n < max(ks), uneven last batches and NaN logits."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader

from hf_dft_head.metrics.quality import (
    QualityAccumulator,
    multi_hot_from_label_ids,
    multilabel_quality_report,
    threshold_predictions,
    top_k_label_ids,
)
from hf_dft_head.training import evaluate
from hf_dft_head.training_data import INDEX_COLUMN


class FixedLogits(torch.nn.Module):
    """A "model" whose logits are a fixed table row per example: ``model(example=ids).logits`` ``(b, n)``."""

    def __init__(self, table: np.ndarray):
        super().__init__()
        self.table = torch.from_numpy(table)
        self.config = SimpleNamespace(num_labels=table.shape[1])
        self.dummy = torch.nn.Parameter(torch.zeros(1))  # something for Accelerate to find

    def forward(self, example: torch.Tensor) -> SimpleNamespace:
        return SimpleNamespace(logits=self.table[example])


def problem(n: int, rows: int = 23, seed: int = 0) -> tuple[np.ndarray, list[list[int]]]:
    """Logits ``(rows, n)`` on a coarse grid (many ties, some exactly at logit 0) and gold id lists, some empty."""
    generator = np.random.default_rng(seed)
    logits = (np.round(generator.normal(size=(rows, n)) * 2) / 2).astype(np.float32)
    logits[3] = 0.0  # a whole row tied at the threshold
    gold = [
        sorted(generator.choice(n, size=generator.integers(0, min(n, 4) + 1), replace=False).tolist())
        for _ in range(rows)
    ]
    gold[0], gold[5] = [], []
    return logits, gold


def loader(logits: np.ndarray, gold: list[list[int]], batch_size: int) -> DataLoader:
    targets = torch.from_numpy(multi_hot_from_label_ids(gold, logits.shape[1]).astype(np.float32))

    def collate(ids: list[int]) -> dict[str, torch.Tensor]:
        ids = torch.tensor(ids)
        return {"example": ids, "labels": targets[ids], INDEX_COLUMN: ids}

    return DataLoader(list(range(len(gold))), batch_size=batch_size, collate_fn=collate)


def same_report(got: dict[str, float], want: dict[str, float]) -> None:
    assert set(want) <= set(got)
    for name, value in want.items():
        assert got[name] == value or (math.isnan(value) and math.isnan(got[name])), (name, got[name], value)


@pytest.mark.parametrize(("n", "ks", "threshold"), [(4, [1, 3, 5], 0.5), (9, [1, 2, 5], 0.3), (30, [3, 1], 0.8)])
def test_evaluate_streams_to_the_in_memory_report(n, ks, threshold):
    logits, gold = problem(n)
    accelerator = Accelerator(cpu=True)
    model = FixedLogits(logits)
    args = SimpleNamespace(ks=ks, threshold=threshold)
    got = evaluate(model, accelerator.prepare(loader(logits, gold, batch_size=5)), accelerator, args)
    want = multilabel_quality_report(
        logits, multi_hot_from_label_ids(gold, n), ks=tuple(ks), threshold=threshold
    )  # the whole split's (N, n) matrices, what evaluate computed before it streamed
    same_report(got, want)
    assert got["examples"] == got["unique_examples"] == len(gold)
    assert model.training  # evaluate hands the model back in training mode


def test_evaluate_refuses_nan_logits():
    logits, gold = problem(6)
    logits[7, 2] = np.nan
    accelerator = Accelerator(cpu=True)
    with pytest.raises(ValueError, match="NaN"):
        evaluate(FixedLogits(logits), loader(logits, gold, 4), accelerator, SimpleNamespace(ks=[1], threshold=0.5))


def test_add_ranked_equals_add_and_checks_its_input():
    logits, gold = problem(12, rows=17, seed=3)
    by_scores = QualityAccumulator(12, ks=(1, 5, 20), threshold=0.4)
    by_ids = QualityAccumulator(12, ks=(1, 5, 20), threshold=0.4)
    for rows in (slice(0, 6), slice(6, 7), slice(7, 17)):
        by_scores.add(logits[rows], gold[rows])
        predicted = threshold_predictions(logits[rows], threshold=0.4)
        by_ids.add_ranked(top_k_label_ids(logits[rows], 20), gold[rows], [np.flatnonzero(p) for p in predicted])
    same_report(by_ids.report(), by_scores.report())
    same_report(by_ids.report(), multilabel_quality_report(logits, multi_hot_from_label_ids(gold, 12), (1, 5, 20), 0.4))
    with pytest.raises(ValueError, match=r"\(2, 12\) integer array"):
        by_ids.add_ranked(np.zeros((2, 5), dtype=np.int64), [[], []], [[], []])
    with pytest.raises(ValueError, match="outside"):
        by_ids.add_ranked(np.full((1, 12), 12), [[]], [[]])
    with pytest.raises(ValueError, match="predicted label set 0 holds label id 40"):
        by_ids.add_ranked(np.tile(np.arange(12), (1, 1)), [[]], [[40]])
    with pytest.raises(ValueError, match="twice"):
        by_ids.add_ranked(np.tile(np.arange(12), (1, 1)), [[1, 1]], [[]])


class IndexTokenizer:
    """Texts are row numbers of the logit table: ``tokenizer(texts)`` gives ``{"example": ids}``."""

    def __call__(self, texts, **_):
        return {"example": torch.tensor([int(t) for t in texts])}


@pytest.mark.parametrize("thresholds", [None, "per_label"])
def test_audit_prediction_pass_in_threads_equals_the_in_memory_report(monkeypatch, thresholds):
    """The audit's prediction pass ranks and thresholds batches in worker threads: its sets and metrics must be
    those of the whole (N, n) matrix, for any thread count."""
    from hf_dft_head import audit

    logits, gold = problem(40, rows=31, seed=4)
    model = FixedLogits(logits)
    levels = np.zeros(40) if thresholds is None else np.linspace(-1.0, 1.0, 40)
    model.config.logit_thresholds = None if thresholds is None else levels.tolist()
    decided = logits > levels
    want_sets = [tuple(np.flatnonzero(row).tolist()) for row in decided]
    targets = multi_hot_from_label_ids(gold, 40)
    # Ranking metrics from the logits; threshold metrics from what the model predicts (logit > its threshold).
    want = multilabel_quality_report(logits, targets, ks=audit.QUALITY_KS)
    shifted = multilabel_quality_report(logits - levels, targets, ks=audit.QUALITY_KS)
    want.update({name: shifted[name] for name in ("micro_f1", "macro_f1", "exact_match")})
    texts = [str(i) for i in range(len(gold))]
    for threads in (1, 2, 4):
        monkeypatch.setattr(audit, "PREDICTION_THREADS", threads)
        monkeypatch.setattr(audit, "available_cores", lambda: 4)
        got = audit.predict_label_sets(model, IndexTokenizer(), texts, gold_sets=gold, batch_size=3, progress=False)
        assert got.label_sets == want_sets
        same_report(got.quality, want)
    no_gold = audit.predict_label_sets(model, IndexTokenizer(), texts, batch_size=5, progress=False)
    assert no_gold.label_sets == want_sets and no_gold.quality is None
