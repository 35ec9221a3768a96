"""The threshold tuner over a stream of batches: the same result whatever the batch and column-chunk sizes (the
whole-array tuner, itself checked against brute force in test_thresholds.py, is the reference), and memory that
does not grow with N x n."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from hf_dft_head import threshold_tuning
from hf_dft_head.threshold_tuning import best_uniform_threshold, best_uniform_threshold_stream, tune_thresholds_stream


def batches_of(logits: np.ndarray, targets: np.ndarray, size: int):
    """The rows of ``(N, n)`` arrays as a stream of ``size``-row batches with gold id lists."""

    def batches():
        for start in range(0, len(logits), size):
            yield logits[start : start + size], [np.flatnonzero(row).tolist() for row in targets[start : start + size]]

    return batches


def problem(seed: int) -> tuple[np.ndarray, np.ndarray]:
    generator = np.random.default_rng(seed)
    targets = generator.random((41, 13)) < 0.15
    targets[:, 5] = False  # a label without positives: the fallback
    targets[7] = False  # an example without labels
    logits = np.round(generator.normal(size=targets.shape) * 2, 1) + targets  # one decimal: many ties
    return logits.astype(np.float32), targets


@pytest.mark.parametrize("seed", [0, 1])
def test_batch_and_chunk_sizes_do_not_change_the_result(seed, monkeypatch):
    logits, targets = problem(seed)
    for metric in ("micro_f1", "macro_f1"):
        for fallback, min_positives in (("global", 1), ("zero", 3), ("global", 4)):
            want = threshold_tuning.tune_thresholds(
                logits, targets, metric, fallback=fallback, min_positives=min_positives
            )
            for size, chunk in ((1, 1 << 22), (4, 8), (41, 3)):
                monkeypatch.setattr(threshold_tuning, "CHUNK_ELEMENTS", chunk)  # column chunks of the pass-2 sort
                got = tune_thresholds_stream(
                    batches_of(logits, targets, size), 13, metric, fallback=fallback, min_positives=min_positives
                )
                monkeypatch.undo()
                assert got.thresholds.tolist() == want.thresholds.tolist()
                assert (got.value, got.rounds, got.fallback_labels) == (want.value, want.rounds, want.fallback_labels)
                assert got.fallback_threshold == want.fallback_threshold
    assert best_uniform_threshold_stream(batches_of(logits, targets, 5), 13) == best_uniform_threshold(logits, targets)


def test_bad_batches_are_refused():
    logits, targets = problem(0)
    with pytest.raises(ValueError, match="shape"):
        tune_thresholds_stream(batches_of(logits, targets, 4), 12)
    logits[3, 2] = np.nan
    with pytest.raises(ValueError, match="finite"):
        tune_thresholds_stream(batches_of(logits, targets, 4), 13)
    with pytest.raises(ValueError, match="no example"):
        tune_thresholds_stream(lambda: iter(()), 13)


def test_memory_follows_the_positives_not_examples_times_labels():
    """80 examples x 50,000 labels in batches of 4: the dense logits alone would be 32 MB in float64."""
    n, rows, size = 50_000, 80, 4
    generator = np.random.default_rng(3)
    gold = [generator.choice(n, size=3, replace=False).tolist() for _ in range(rows)]

    def batches():
        for start in range(0, rows, size):
            batch = np.random.default_rng(start).normal(size=(size, n)).astype(np.float32)  # the same at every pass
            for row, labels in enumerate(gold[start : start + size]):
                batch[row, labels] += 3.0
            yield batch, gold[start : start + size]

    tracemalloc.start()
    try:
        tuned = tune_thresholds_stream(batches, n, "micro_f1", fallback="zero")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(tuned.fallback_labels) == n - len({label for labels in gold for label in labels})
    # A few (4, n) batches and a few dozen (n,) arrays (measured: 8.5 MB), not (80, n) ones.
    assert peak < rows * n * 8 / 3
