"""Multi-label quality metrics: P@k, R@k, F1@k, nDCG@k, micro/macro F1 at a threshold, exact match.

Pure numpy (no torch, no transformers), so the training loop, the model card, the benchmarks and the
``evaluate`` module in ``multilabel_quality/`` all share one implementation.

Inputs
------
``scores``: (B, n) array of real scores, one row per example and one column per label. Ranking metrics
only use the order of the scores; threshold metrics read them as logits (``scores_are_logits=True``,
the default, what a sigmoid head outputs before the sigmoid) or as probabilities. A bool (B, n) array is
taken as already-thresholded predicted label sets by the threshold metrics.
``targets``: (B, n) multi-hot array of 0/1 (bool, integer or float). Label-id lists convert with
:func:`multi_hot_from_label_ids`.

Conventions (fixed, tested against scikit-learn or hand-computed cases)
-----------------------------------------------------------------------
* Top-k order: labels sorted by score descending, ties broken by the smaller label id first. This is a
  strict total order, so the top-k sets for increasing k are nested and results are deterministic.
* k > n: the ranking holds all n labels, but P@k still divides by k (the k slots that cannot be filled
  count as misses), the extreme-classification convention; nDCG@k and R@k are unaffected.
* P@k = |top_k ∩ y| / k.
* R@k = |top_k ∩ y| / |y|, the denominator is |y| and not min(k, |y|): this is the textbook definition and
  the one in the paper's code (arXiv 2310.10443, ``spmlbl/metrics.py``, ``RecallAtK``), so R@k < 1 when
  |y| > k even for a perfect ranker. nDCG@k is the metric that normalises by the best achievable ranking.
* F1@k = 2 P R / (P + R) with P and R the MEANS over rows of P@k and R@k (the paper's definition, not the
  mean of per-row F1); 0 when both are 0.
* nDCG@k: binary gains, discount 1 / log2(rank + 1), normalised by the ideal DCG of min(k, |y|) hits.
  Equals ``sklearn.metrics.ndcg_score(targets, scores, k=k)`` when no scores tie (sklearn averages over
  ties, we break them by label id).
* Rows with no gold label (|y| = 0; 6,125 of the disaster messages): with ``empty_rows="zero"`` (default)
  they score 0 in P@k, R@k and nDCG@k and stay in the mean, as in the paper's code and in sklearn's
  ``ndcg_score``; a top-k prediction is always wrong on them. ``empty_rows="skip"`` averages the @k
  metrics over rows with at least one gold label only (NaN if there are none). Threshold metrics need no
  special case: predicting the empty set on an empty row is a correct prediction.
* Threshold: a label is predicted iff probability > ``threshold`` (strict), i.e. logit > logit(threshold);
  ``threshold=0.5`` is logit 0, the sign rule of the argmax label set. The logit form is compared
  directly, no sigmoid is computed, so large logits do not saturate.
* F1 of a label (macro) or of all pooled decisions (micro) is 2 tp / (2 tp + fp + fn); where that
  denominator is 0 (a label never gold and never predicted) the value is ``zero_division``: 0.0
  (default), 1.0, or NaN, which drops the label from the macro average. Same as scikit-learn's
  ``f1_score(..., zero_division=...)``.

Memory: everything is processed in row chunks of about ``_CHUNK_ELEMENTS`` scores, so no (B, n)
temporary is created; B = 3000, n = 100k runs without a Python loop over rows.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "QualityAccumulator",
    "exact_match",
    "f1_at_k",
    "f1_from_counts",
    "label_ids_by_row",
    "macro_f1",
    "micro_f1",
    "multi_hot_from_label_ids",
    "multilabel_quality_report",
    "ndcg_at_k",
    "precision_at_k",
    "recall_at_k",
    "threshold_predictions",
    "top_k_label_ids",
]

# Scores handled per chunk (rows * labels). 4M float64 values are 32 MB: big enough that numpy's per-call
# overhead is negligible, small enough that the (chunk, n) temporaries stay far below the inputs' size.
_CHUNK_ELEMENTS = 1 << 22

_EMPTY_ROW_MODES = ("zero", "skip")


# --------------------------------------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------------------------------------


def _as_score_matrix(scores, name: str = "scores") -> np.ndarray:
    array = np.asarray(scores)
    if array.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D (batch, num_labels) array, got shape {array.shape}; "
            "wrap a single example as scores[None, :]."
        )
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"{name} has shape {array.shape}; it needs at least one row and one label column.")
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_) or np.iscomplexobj(array):
        raise ValueError(f"{name} must hold real numbers, got dtype {array.dtype}.")
    return array


def _as_target_matrix(targets, scores_shape: tuple[int, int]) -> np.ndarray:
    array = np.asarray(targets)
    if array.ndim != 2:
        raise ValueError(
            f"targets must be a 2-D (batch, num_labels) multi-hot array, got shape {array.shape}; "
            "convert label-id lists with multi_hot_from_label_ids(label_ids, num_labels)."
        )
    if array.shape != scores_shape:
        raise ValueError(
            f"targets has shape {array.shape} but scores has shape {scores_shape}; both must be "
            "(batch, num_labels) with the same label columns."
        )
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_) or np.iscomplexobj(array):
        raise ValueError(f"targets must hold 0/1 values, got dtype {array.dtype}.")
    return array


def _check_k(k, name: str = "k") -> int:
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)):
        # The project reports all bad input as ValueError naming the argument, wrong types included.
        raise ValueError(f"{name} must be an integer >= 1, got {k!r}.")  # noqa: TRY004
    if k < 1:
        raise ValueError(f"{name} must be >= 1, got {k}.")
    return int(k)


def _check_ks(ks) -> tuple[int, ...]:
    if isinstance(ks, (int, np.integer)) and not isinstance(ks, (bool, np.bool_)):
        ks = (ks,)
    try:
        values = tuple(ks)
    except TypeError:
        raise ValueError(f"ks must be a sequence of integers >= 1, got {ks!r}.") from None
    if not values:
        raise ValueError("ks is empty; give at least one cut-off, e.g. ks=(1, 3, 5).")
    return tuple(_check_k(k, name=f"ks[{i}]") for i, k in enumerate(values))


def _check_threshold(threshold) -> float:
    value = float(threshold)
    if not 0.0 < value < 1.0:
        raise ValueError(
            f"threshold is a probability and must lie strictly between 0 and 1, got {threshold!r} "
            "(threshold=0.5 is logit 0)."
        )
    return value


def _check_empty_rows(empty_rows: str) -> str:
    if empty_rows not in _EMPTY_ROW_MODES:
        raise ValueError(f"empty_rows must be one of {_EMPTY_ROW_MODES}, got {empty_rows!r}.")
    return empty_rows


def _check_zero_division(zero_division) -> float:
    value = float(zero_division)
    if not (np.isnan(value) or value in (0.0, 1.0)):
        raise ValueError(f"zero_division must be 0.0, 1.0 or nan (as in scikit-learn), got {zero_division!r}.")
    return value


def _row_chunks(n_rows: int, n_labels: int) -> Iterator[slice]:
    rows_per_chunk = max(1, _CHUNK_ELEMENTS // n_labels)
    for start in range(0, n_rows, rows_per_chunk):
        yield slice(start, min(start + rows_per_chunk, n_rows))


def _checked_score_chunk(scores: np.ndarray, rows: slice) -> np.ndarray:
    chunk = scores[rows]
    if np.issubdtype(chunk.dtype, np.floating):
        nan_rows = np.flatnonzero(np.isnan(chunk).any(axis=1))
        if nan_rows.size:
            raise ValueError(
                f"scores row {rows.start + int(nan_rows[0])} contains NaN; NaN scores cannot be ranked or "
                "thresholded, fix the model output first."
            )
        return chunk
    # Integer or bool scores: rank them as floats (bool ranks True before False).
    return chunk.astype(np.float64)


def _checked_target_chunk(targets: np.ndarray, rows: slice) -> np.ndarray:
    chunk = targets[rows]
    if chunk.dtype == np.bool_:
        return chunk
    bad = (chunk != 0) & (chunk != 1)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise ValueError(
            f"targets must be multi-hot 0/1; row {rows.start + int(row)}, label {int(col)} holds "
            f"{chunk[row, col]!r}. Convert label-id lists with multi_hot_from_label_ids(label_ids, num_labels)."
        )
    return chunk.astype(np.bool_)


# --------------------------------------------------------------------------------------------------------
# Ranking
# --------------------------------------------------------------------------------------------------------


def _rank_top_k(chunk: np.ndarray, k: int) -> np.ndarray:
    """Top-k label ids of each row of a NaN-free (rows, n) chunk, by score descending then label id.

    Returns (rows, min(k, n)) int64. argpartition finds the k largest in O(n) per row but breaks ties at
    the k-th value arbitrarily; only the rows with such a tie are recomputed with an explicit rule.
    """
    n_labels = chunk.shape[1]
    if k >= n_labels:
        # Stable sort of the negated scores: descending score, ascending label id among equal scores.
        return np.argsort(-chunk, axis=1, kind="stable")
    top = np.argpartition(chunk, n_labels - k, axis=1)[:, n_labels - k :]
    top_scores = np.take_along_axis(chunk, top, axis=1)
    kth_score = top_scores.min(axis=1, keepdims=True)
    tied_rows = np.flatnonzero((chunk >= kth_score).sum(axis=1) > k)
    if tied_rows.size:
        # Keep the labels scored above the k-th value (all already in `top`) and fill the slots left with the
        # lowest-id labels at the k-th value. One pass over the tied rows; at n = 1M float32 logits often tie.
        tied_chunk = chunk[tied_rows]
        tied_kth = kth_score[tied_rows]  # (t, 1)
        tied_top, above = top[tied_rows], top_scores[tied_rows] > tied_kth  # (t, k) each
        free_slots = k - above.sum(axis=1)  # (t,)
        at_rows, at_ids = np.nonzero(tied_chunk == tied_kth)  # row-major: ids ascending within a row
        rank_at = np.arange(at_rows.size) - np.searchsorted(at_rows, at_rows)
        fill = rank_at < free_slots[at_rows]
        chosen = np.empty_like(tied_top)
        above_rows = np.nonzero(above)[0]
        chosen[above_rows, np.cumsum(above, axis=1)[above] - 1] = tied_top[above]
        chosen[at_rows[fill], (k - free_slots)[at_rows[fill]] + rank_at[fill]] = at_ids[fill]
        top[tied_rows] = chosen
        top_scores[tied_rows] = np.take_along_axis(tied_chunk, chosen, axis=1)
    order = np.lexsort((top, -top_scores), axis=1)
    return np.take_along_axis(top, order, axis=1)


def top_k_label_ids(scores, k: int) -> np.ndarray:
    """The k best label ids of each row, best first, ties broken by the smaller label id.

    Args:
        scores: (B, n) real scores (logits or probabilities: only their order matters), no NaN.
        k: cut-off, >= 1. If k > n all n labels are returned.

    Returns:
        (B, min(k, n)) int64 array of label ids.
    """
    scores = _as_score_matrix(scores)
    k = _check_k(k)
    n_rows, n_labels = scores.shape
    ranked = np.empty((n_rows, min(k, n_labels)), dtype=np.int64)
    for rows in _row_chunks(n_rows, n_labels):
        ranked[rows] = _rank_top_k(_checked_score_chunk(scores, rows), k)
    return ranked


# --------------------------------------------------------------------------------------------------------
# One pass over the data collects everything the metrics need
# --------------------------------------------------------------------------------------------------------


@dataclass
class _Statistics:
    """Sufficient statistics gathered in one chunked pass over (scores, targets)."""

    n_labels: int
    ranked_hits: np.ndarray | None  # (B, min(k_max, n)) bool: is the r-th ranked label gold
    gold_counts: np.ndarray  # (B,) int64: |y| per row
    true_positives: np.ndarray | None  # (n,) int64 per label at the threshold
    false_positives: np.ndarray | None
    false_negatives: np.ndarray | None
    exact_matches: int | None  # rows whose predicted set equals the gold set


def _threshold_chunk(chunk: np.ndarray, threshold: float, scores_are_logits: bool) -> np.ndarray:
    if chunk.dtype == np.bool_:
        return chunk
    if scores_are_logits:
        # p > t  <=>  logit > log(t / (1 - t)); exact 0 for t = 0.5.
        return chunk > np.log(threshold) - np.log1p(-threshold)
    return chunk > threshold


def _collect(
    scores,
    targets,
    *,
    k_max: int | None,
    threshold: float | None,
    scores_are_logits: bool = True,
) -> _Statistics:
    scores = _as_score_matrix(scores)
    targets = _as_target_matrix(targets, scores.shape)
    n_rows, n_labels = scores.shape
    gold_counts = np.empty(n_rows, dtype=np.int64)
    ranked_hits = None
    if k_max is not None:
        ranked_hits = np.empty((n_rows, min(k_max, n_labels)), dtype=np.bool_)
    counts = None
    exact_matches = None
    if threshold is not None:
        counts = np.zeros((3, n_labels), dtype=np.int64)
        exact_matches = 0
    for rows in _row_chunks(n_rows, n_labels):
        gold = _checked_target_chunk(targets, rows)
        gold_counts[rows] = gold.sum(axis=1)
        # A bool score matrix is a set of predictions: no NaN check; ranked as 0/1 if @k metrics are asked.
        score_chunk = scores[rows] if scores.dtype == np.bool_ else _checked_score_chunk(scores, rows)
        if ranked_hits is not None:
            rank_input = score_chunk.astype(np.float64) if score_chunk.dtype == np.bool_ else score_chunk
            ranked_hits[rows] = np.take_along_axis(gold, _rank_top_k(rank_input, k_max), axis=1)
        if counts is not None:
            predicted = _threshold_chunk(score_chunk, threshold, scores_are_logits)
            counts[0] += (predicted & gold).sum(axis=0)
            counts[1] += (predicted & ~gold).sum(axis=0)
            counts[2] += (~predicted & gold).sum(axis=0)
            exact_matches += int((predicted == gold).all(axis=1).sum())
    return _Statistics(
        n_labels=n_labels,
        ranked_hits=ranked_hits,
        gold_counts=gold_counts,
        true_positives=None if counts is None else counts[0],
        false_positives=None if counts is None else counts[1],
        false_negatives=None if counts is None else counts[2],
        exact_matches=exact_matches,
    )


def _row_mean(values: np.ndarray, gold_counts: np.ndarray, empty_rows: str) -> float:
    if empty_rows == "skip":
        kept = gold_counts > 0
        return float(values[kept].mean()) if kept.any() else float("nan")
    return float(values.mean())


def _per_row_hits(stats: _Statistics, k: int) -> np.ndarray:
    return stats.ranked_hits[:, :k].sum(axis=1)


def _precision_from(stats: _Statistics, k: int, empty_rows: str) -> float:
    return _row_mean(_per_row_hits(stats, k) / k, stats.gold_counts, empty_rows)


def _recall_from(stats: _Statistics, k: int, empty_rows: str) -> float:
    hits = _per_row_hits(stats, k)
    # Rows with no gold label have recall 0 (0 hits over the 0/0 case), as in the paper's RecallAtK.
    recall = np.divide(
        hits,
        stats.gold_counts,
        out=np.zeros(hits.shape, dtype=np.float64),
        where=stats.gold_counts > 0,
    )
    return _row_mean(recall, stats.gold_counts, empty_rows)


def _harmonic_mean(precision: float, recall: float) -> float:
    if np.isnan(precision) or np.isnan(recall):
        return float("nan")
    if precision + recall == 0.0:
        return 0.0
    return 2.0 * precision * recall / (precision + recall)


def _ndcg_from(stats: _Statistics, k: int, empty_rows: str) -> float:
    depth = min(k, stats.ranked_hits.shape[1])
    discounts = 1.0 / np.log2(np.arange(2, depth + 2))
    dcg = stats.ranked_hits[:, :depth] @ discounts
    # Ideal DCG: all min(k, |y|) gold labels at the top; cumulative discounts indexed by that count.
    ideal_by_count = np.concatenate(([0.0], np.cumsum(discounts)))
    ideal = ideal_by_count[np.minimum(stats.gold_counts, depth)]
    ndcg = np.divide(dcg, ideal, out=np.zeros(dcg.shape, dtype=np.float64), where=ideal > 0)
    return _row_mean(ndcg, stats.gold_counts, empty_rows)


def _f1_from_counts(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, zero_division: float) -> np.ndarray:
    denominator = 2 * tp + fp + fn
    f1 = np.full(np.shape(tp), zero_division, dtype=np.float64)
    np.divide(2 * tp, denominator, out=f1, where=denominator > 0)
    return f1


def _micro_from(stats: _Statistics, zero_division: float) -> float:
    return float(
        _f1_from_counts(
            stats.true_positives.sum(),
            stats.false_positives.sum(),
            stats.false_negatives.sum(),
            zero_division,
        )
    )


def _macro_from(stats: _Statistics, zero_division: float) -> float:
    per_label = _f1_from_counts(
        stats.true_positives,
        stats.false_positives,
        stats.false_negatives,
        zero_division,
    )
    if np.isnan(per_label).all():
        return float("nan")
    # NaN (zero_division=nan) drops undefined labels from the average, as scikit-learn does.
    return float(np.nanmean(per_label))


# --------------------------------------------------------------------------------------------------------
# Public metrics
# --------------------------------------------------------------------------------------------------------


def precision_at_k(scores, targets, k: int, *, empty_rows: str = "zero") -> float:
    """Mean over rows of |top_k ∩ y| / k.

    Args:
        scores: (B, n) real scores; only their order matters. No NaN.
        targets: (B, n) multi-hot 0/1.
        k: cut-off >= 1; if k > n the missing slots count as misses (denominator stays k).
        empty_rows: "zero" (rows with no gold label score 0 and are averaged in) or "skip".

    Returns:
        P@k in [0, 1] (NaN only for empty_rows="skip" with no non-empty row).
    """
    k = _check_k(k)
    empty_rows = _check_empty_rows(empty_rows)
    return _precision_from(_collect(scores, targets, k_max=k, threshold=None), k, empty_rows)


def recall_at_k(scores, targets, k: int, *, empty_rows: str = "zero") -> float:
    """Mean over rows of |top_k ∩ y| / |y| (denominator |y|, the paper's; see the module docstring).

    Args:
        scores: (B, n) real scores; only their order matters. No NaN.
        targets: (B, n) multi-hot 0/1.
        k: cut-off >= 1.
        empty_rows: "zero" (rows with |y| = 0 have recall 0 and are averaged in) or "skip".

    Returns:
        R@k in [0, 1].
    """
    k = _check_k(k)
    empty_rows = _check_empty_rows(empty_rows)
    return _recall_from(_collect(scores, targets, k_max=k, threshold=None), k, empty_rows)


def f1_at_k(scores, targets, k: int, *, empty_rows: str = "zero") -> float:
    """The paper's F1@k: harmonic mean of mean P@k and mean R@k (not the mean of per-row F1).

    Args:
        scores: (B, n) real scores; only their order matters. No NaN.
        targets: (B, n) multi-hot 0/1.
        k: cut-off >= 1.
        empty_rows: "zero" or "skip", applied to both P@k and R@k.

    Returns:
        F1@k in [0, 1]; 0 when P@k = R@k = 0.
    """
    k = _check_k(k)
    empty_rows = _check_empty_rows(empty_rows)
    stats = _collect(scores, targets, k_max=k, threshold=None)
    return _harmonic_mean(_precision_from(stats, k, empty_rows), _recall_from(stats, k, empty_rows))


def ndcg_at_k(scores, targets, k: int, *, empty_rows: str = "zero") -> float:
    """Mean over rows of nDCG@k with binary gains and 1/log2(rank + 1) discounts.

    Args:
        scores: (B, n) real scores; only their order matters (ties broken by label id). No NaN.
        targets: (B, n) multi-hot 0/1.
        k: cut-off >= 1.
        empty_rows: "zero" (rows with no gold label score 0, like sklearn's ndcg_score) or "skip".

    Returns:
        nDCG@k in [0, 1].
    """
    k = _check_k(k)
    empty_rows = _check_empty_rows(empty_rows)
    return _ndcg_from(_collect(scores, targets, k_max=k, threshold=None), k, empty_rows)


def threshold_predictions(scores, *, threshold: float = 0.5, scores_are_logits: bool = True) -> np.ndarray:
    """Predicted label sets: probability > threshold, i.e. logit > log(threshold / (1 - threshold)).

    Args:
        scores: (B, n) logits (scores_are_logits=True) or probabilities. No NaN.
        threshold: probability cut, strictly between 0 and 1; 0.5 is logit 0.
        scores_are_logits: how to read scores.

    Returns:
        (B, n) bool multi-hot predictions.
    """
    scores = _as_score_matrix(scores)
    threshold = _check_threshold(threshold)
    predicted = np.empty(scores.shape, dtype=np.bool_)
    for rows in _row_chunks(*scores.shape):
        predicted[rows] = _threshold_chunk(_checked_score_chunk(scores, rows), threshold, scores_are_logits)
    return predicted


def micro_f1(
    scores,
    targets,
    *,
    threshold: float = 0.5,
    scores_are_logits: bool = True,
    zero_division: float = 0.0,
) -> float:
    """F1 of all (example, label) decisions pooled: 2 tp / (2 tp + fp + fn) at a threshold.

    Args:
        scores: (B, n) logits or probabilities (see scores_are_logits), or a bool array of predictions.
        targets: (B, n) multi-hot 0/1.
        threshold: probability cut in (0, 1); a label is predicted iff its probability is > threshold.
        scores_are_logits: True if scores are logits (default), False for probabilities.
        zero_division: value when nothing is gold and nothing predicted: 0.0, 1.0 or nan (sklearn's).

    Returns:
        Micro F1 in [0, 1].
    """
    threshold = _check_threshold(threshold)
    zero_division = _check_zero_division(zero_division)
    stats = _collect(
        scores,
        targets,
        k_max=None,
        threshold=threshold,
        scores_are_logits=scores_are_logits,
    )
    return _micro_from(stats, zero_division)


def macro_f1(
    scores,
    targets,
    *,
    threshold: float = 0.5,
    scores_are_logits: bool = True,
    zero_division: float = 0.0,
) -> float:
    """Unweighted mean over labels of per-label F1 = 2 tp / (2 tp + fp + fn) at a threshold.

    Args:
        scores: (B, n) logits or probabilities (see scores_are_logits), or a bool array of predictions.
        targets: (B, n) multi-hot 0/1.
        threshold: probability cut in (0, 1).
        scores_are_logits: True if scores are logits (default), False for probabilities.
        zero_division: F1 of a label never gold and never predicted: 0.0 (default), 1.0, or nan to leave
            such labels out of the mean. Matches sklearn's f1_score(average="macro", zero_division=...).

    Returns:
        Macro F1 in [0, 1] (NaN if every label is undefined and zero_division is nan).
    """
    threshold = _check_threshold(threshold)
    zero_division = _check_zero_division(zero_division)
    stats = _collect(
        scores,
        targets,
        k_max=None,
        threshold=threshold,
        scores_are_logits=scores_are_logits,
    )
    return _macro_from(stats, zero_division)


def exact_match(scores, targets, *, threshold: float = 0.5, scores_are_logits: bool = True) -> float:
    """Share of rows whose predicted label set equals the gold set (subset accuracy).

    Args:
        scores: (B, n) logits or probabilities (see scores_are_logits), or a bool array of predictions.
        targets: (B, n) multi-hot 0/1. An empty gold row matches an empty prediction.
        threshold: probability cut in (0, 1).
        scores_are_logits: True if scores are logits (default), False for probabilities.

    Returns:
        Exact match ratio in [0, 1].
    """
    threshold = _check_threshold(threshold)
    stats = _collect(
        scores,
        targets,
        k_max=None,
        threshold=threshold,
        scores_are_logits=scores_are_logits,
    )
    return stats.exact_matches / stats.gold_counts.size


def multilabel_quality_report(
    scores,
    targets,
    ks: Sequence[int] = (1, 3, 5),
    threshold: float = 0.5,
    scores_are_logits: bool = True,
    *,
    empty_rows: str = "zero",
    zero_division: float = 0.0,
) -> dict[str, float]:
    """All quality metrics in one pass, as a flat dict for logging.

    Args:
        scores: (B, n) logits (default) or probabilities; ranking metrics use only their order.
        targets: (B, n) multi-hot 0/1.
        ks: cut-offs for the @k metrics, each >= 1.
        threshold: probability cut in (0, 1) for micro_f1, macro_f1 and exact_match (0.5 = logit 0).
        scores_are_logits: how threshold metrics read scores.
        empty_rows: "zero" or "skip", for the @k metrics (see the module docstring).
        zero_division: 0.0, 1.0 or nan for undefined F1 (see macro_f1).

    Returns:
        {"p@k", "r@k", "f1@k", "ndcg@k" for each k in ks, "micro_f1", "macro_f1", "exact_match"}: floats.
    """
    ks = _check_ks(ks)
    threshold = _check_threshold(threshold)
    empty_rows = _check_empty_rows(empty_rows)
    zero_division = _check_zero_division(zero_division)
    stats = _collect(
        scores,
        targets,
        k_max=max(ks),
        threshold=threshold,
        scores_are_logits=scores_are_logits,
    )
    return _report_from(stats, ks, empty_rows, zero_division)


def _report_from(stats: _Statistics, ks: tuple[int, ...], empty_rows: str, zero_division: float) -> dict[str, float]:
    """The flat metrics dict of :func:`multilabel_quality_report` from gathered statistics."""
    report: dict[str, float] = {}
    for k in ks:
        precision = _precision_from(stats, k, empty_rows)
        recall = _recall_from(stats, k, empty_rows)
        report[f"p@{k}"] = precision
        report[f"r@{k}"] = recall
        report[f"f1@{k}"] = _harmonic_mean(precision, recall)
        report[f"ndcg@{k}"] = _ndcg_from(stats, k, empty_rows)
    report["micro_f1"] = _micro_from(stats, zero_division)
    report["macro_f1"] = _macro_from(stats, zero_division)
    report["exact_match"] = stats.exact_matches / stats.gold_counts.size
    return report


def f1_from_counts(true_positives, false_positives, false_negatives, *, zero_division: float = 0.0) -> dict[str, float]:
    """Micro- and macro-F1 from per-label decision counts, for callers that count without a (B, n) array.

    Args:
        true_positives, false_positives, false_negatives: (n,) integer counts per label.
        zero_division: 0.0, 1.0 or nan, as in :func:`macro_f1`.

    Returns:
        {"micro_f1", "macro_f1"}: exactly the floats :func:`micro_f1` and :func:`macro_f1` give on decisions with
        these counts.
    """
    counts = [np.asarray(c, dtype=np.int64).reshape(-1) for c in (true_positives, false_positives, false_negatives)]
    if len({c.shape for c in counts}) != 1:
        raise ValueError(f"the three count arrays must have one shape (n,), got {[c.shape for c in counts]}.")
    stats = _Statistics(
        n_labels=counts[0].size,
        ranked_hits=None,
        gold_counts=np.zeros(0, dtype=np.int64),
        true_positives=counts[0],
        false_positives=counts[1],
        false_negatives=counts[2],
        exact_matches=None,
    )
    zero_division = _check_zero_division(zero_division)
    return {"micro_f1": _micro_from(stats, zero_division), "macro_f1": _macro_from(stats, zero_division)}


class QualityAccumulator:
    """:func:`multilabel_quality_report` gathered batch by batch, for splits whose (B, n) scores do not fit in memory.

    Each :meth:`add` takes one batch of scores (b, n) with its gold label-id lists (and, optionally, the predicted
    sets as a (b, n) bool array, for a model that predicts with thresholds of its own); only the top-``max(ks)``
    hits of each row, its gold count and three (n,) counters are kept, and no (b, n) multi-hot target is built.
    :meth:`report` gives exactly the numbers :func:`multilabel_quality_report` gives on the concatenated batches (the
    same statistics, in the same order).
    """

    def __init__(
        self,
        num_labels: int,
        ks: Sequence[int] = (1, 3, 5),
        threshold: float = 0.5,
        scores_are_logits: bool = True,
        *,
        empty_rows: str = "zero",
        zero_division: float = 0.0,
    ):
        if isinstance(num_labels, (bool, np.bool_)) or not isinstance(num_labels, (int, np.integer)) or num_labels < 1:
            raise ValueError(f"num_labels must be an integer >= 1, got {num_labels!r}.")
        self.num_labels = int(num_labels)
        self.ks = _check_ks(ks)
        self.threshold = _check_threshold(threshold)
        self.scores_are_logits = scores_are_logits
        self.empty_rows = _check_empty_rows(empty_rows)
        self.zero_division = _check_zero_division(zero_division)
        self._hits: list[np.ndarray] = []
        self._gold_counts: list[np.ndarray] = []
        self._counts = np.zeros((3, self.num_labels), dtype=np.int64)
        self._exact_matches = 0

    def add(self, scores, gold_label_ids: Sequence[Sequence[int]], predicted: np.ndarray | None = None) -> None:
        """One batch: ``scores`` (b, n), ``gold_label_ids`` b label-id lists, ``predicted`` optional (b, n) bool.

        Without ``predicted`` the threshold metrics read the scores at ``threshold``. The gold sets stay id lists:
        the counts come from (row, label) pairs of the predicted and gold sets, the ranking hits from the top
        ``max(ks)`` ids of each row (same order and tie rule as :func:`top_k_label_ids`).
        """
        scores = _as_score_matrix(scores)
        rows, n = scores.shape
        if n != self.num_labels:
            raise ValueError(f"scores have {n} label columns, the accumulator {self.num_labels}.")
        if len(gold_label_ids) != rows:
            raise ValueError(f"{len(gold_label_ids)} gold label sets for {rows} rows of scores.")
        if predicted is not None and np.shape(predicted) != scores.shape:
            raise ValueError(f"predicted has shape {np.shape(predicted)}, scores {scores.shape}.")
        # A bool score matrix is a set of predictions (no NaN check), ranked as 0/1 as in _collect.
        chunk = scores if scores.dtype == np.bool_ else _checked_score_chunk(scores, slice(0, rows))
        top = _rank_top_k(chunk.astype(np.float64) if chunk.dtype == np.bool_ else chunk, max(self.ks))
        decided = (
            _threshold_chunk(chunk, self.threshold, self.scores_are_logits)
            if predicted is None
            else np.asarray(predicted, dtype=np.bool_)
        )
        predicted_rows, predicted_labels = np.nonzero(decided)
        self._accumulate(top, self._pairs(gold_label_ids, "gold"), (predicted_rows, predicted_labels))

    def add_ranked(
        self,
        top_label_ids,
        gold_label_ids: Sequence[Sequence[int]],
        predicted_label_ids: Sequence[Sequence[int]],
    ) -> None:
        """One batch given as label ids only, with no (b, n) array: what a distributed evaluation gathers.

        Args:
            top_label_ids: (b, min(max(ks), n)) integer ids, each row's best labels best first, ranked as
                :func:`top_k_label_ids` ranks them (score descending, ties by the smaller id).
            gold_label_ids: b label-id lists, the gold sets.
            predicted_label_ids: b label-id lists, the predicted sets (e.g. the labels with logit > logit(threshold)).

        Adding a batch this way or with :meth:`add` on the scores these ids come from gives the same report.
        """
        top = np.asarray(top_label_ids)
        rows = len(gold_label_ids)
        width = min(max(self.ks), self.num_labels)
        if top.shape != (rows, width) or not (np.issubdtype(top.dtype, np.integer) or top.size == 0):
            raise ValueError(
                f"top_label_ids must be a ({rows}, {width}) integer array (the best min(max(ks), n) label ids of "
                f"each of the {rows} rows), got shape {top.shape} and dtype {top.dtype}."
            )
        top = top.astype(np.int64, copy=False)
        if top.size and (int(top.min()) < 0 or int(top.max()) >= self.num_labels):
            raise ValueError(f"top_label_ids holds ids outside [0, {self.num_labels}).")
        if len(predicted_label_ids) != rows:
            raise ValueError(f"{len(predicted_label_ids)} predicted label sets for {rows} gold label sets.")
        predicted_rows, predicted_labels = self._pairs(predicted_label_ids, "predicted")
        self._accumulate(top, self._pairs(gold_label_ids, "gold"), (predicted_rows, predicted_labels))

    def _pairs(self, label_ids: Sequence[Sequence[int]], what: str) -> tuple[np.ndarray, np.ndarray]:
        """b label-id lists -> (rows (P,), labels (P,)) int64, checked: ids in [0, n), none twice in a row."""
        n = self.num_labels
        sets = [np.asarray(list(ids), dtype=np.int64).reshape(-1) for ids in label_ids]
        counts = np.array([len(ids) for ids in sets], dtype=np.int64)
        rows = np.repeat(np.arange(len(sets), dtype=np.int64), counts)
        labels = np.concatenate(sets) if sets else np.zeros(0, dtype=np.int64)
        bad = np.flatnonzero((labels < 0) | (labels >= n))
        if len(bad):
            raise ValueError(f"{what} label set {rows[bad[0]]} holds label id {labels[bad[0]]}, not in [0, {n}).")
        if len(np.unique(rows * n + labels)) != len(labels):
            raise ValueError(f"a {what} label set holds a label id twice: give each label at most once.")
        return rows, labels

    def _accumulate(
        self, top: np.ndarray, gold: tuple[np.ndarray, np.ndarray], predicted: tuple[np.ndarray, np.ndarray]
    ) -> None:
        """Add one batch: ``top`` (b, min(max(ks), n)) ranked ids; ``gold`` and ``predicted`` (row, label) pairs."""
        n = self.num_labels
        rows = top.shape[0]
        gold_rows, gold_labels = gold
        predicted_rows, predicted_labels = predicted
        gold_counts = np.bincount(gold_rows, minlength=rows).astype(np.int64)
        gold_keys = gold_rows * n + gold_labels
        # Hit r of a row: is its r-th ranked label gold. Sorted keys and one searchsorted, no (b, n) array.
        top_keys = np.arange(rows, dtype=np.int64)[:, None] * n + top
        sorted_gold = np.sort(gold_keys)
        where = np.searchsorted(sorted_gold, top_keys)
        hits = sorted_gold[np.minimum(where, max(sorted_gold.size - 1, 0))] == top_keys if sorted_gold.size else None
        hits = np.zeros(top.shape, dtype=np.bool_) if hits is None else hits
        both = np.intersect1d(predicted_rows * n + predicted_labels, gold_keys, assume_unique=True)
        true_positives = np.bincount(both % n, minlength=n)
        self._counts[0] += true_positives
        self._counts[1] += np.bincount(predicted_labels, minlength=n) - true_positives
        self._counts[2] += np.bincount(gold_labels, minlength=n) - true_positives
        # A row's predicted set equals its gold set iff both have as many labels as they share.
        shared = np.bincount(both // n, minlength=rows)
        predicted_counts = np.bincount(predicted_rows, minlength=rows)
        self._exact_matches += int(np.sum((predicted_counts == gold_counts) & (shared == gold_counts)))
        self._hits.append(hits)
        self._gold_counts.append(gold_counts)

    @property
    def rows(self) -> int:
        """Rows added so far."""
        return sum(len(counts) for counts in self._gold_counts)

    def report(self) -> dict[str, float]:
        """The metrics of every row added (see :func:`multilabel_quality_report`)."""
        if not self._hits:
            raise ValueError("no rows were added: the metrics need at least one example.")
        stats = _Statistics(
            n_labels=self.num_labels,
            ranked_hits=np.concatenate(self._hits),
            gold_counts=np.concatenate(self._gold_counts),
            true_positives=self._counts[0],
            false_positives=self._counts[1],
            false_negatives=self._counts[2],
            exact_matches=self._exact_matches,
        )
        return _report_from(stats, self.ks, self.empty_rows, self.zero_division)


def label_ids_by_row(matrix) -> list[np.ndarray]:
    """The inverse of :func:`multi_hot_from_label_ids`: the ids of each row's non-zero columns, ascending.

    Args:
        matrix: (b, n) bool or 0/1 array (e.g. the decisions ``logits > thresholds``).

    Returns:
        b int64 arrays.
    """
    matrix = np.asarray(matrix)
    if matrix.shape[0] == 0:
        return []
    rows, labels = np.nonzero(matrix)
    return np.split(labels.astype(np.int64, copy=False), np.searchsorted(rows, np.arange(1, matrix.shape[0])))


def multi_hot_from_label_ids(label_ids: Sequence[Sequence[int]], num_labels: int) -> np.ndarray:
    """Multi-hot matrix from one list of label ids per example (an empty list is the empty label set).

    Args:
        label_ids: B sequences of distinct integer label ids in [0, num_labels).
        num_labels: n, the number of label columns.

    Returns:
        (B, n) uint8 multi-hot array.
    """
    if isinstance(num_labels, (bool, np.bool_)) or not isinstance(num_labels, (int, np.integer)) or num_labels < 1:
        raise ValueError(f"num_labels must be an integer >= 1, got {num_labels!r}.")
    rows = list(label_ids)
    lengths = np.empty(len(rows), dtype=np.int64)
    for i, row in enumerate(rows):  # ragged lists: one len() per row is unavoidable and cheap
        try:
            lengths[i] = len(row)
        except TypeError:
            raise ValueError(f"label_ids row {i} is {row!r}, not a sequence of label ids.") from None
    flat = np.asarray(list(itertools.chain.from_iterable(rows)))
    if flat.size and not (np.issubdtype(flat.dtype, np.integer) and flat.dtype != np.bool_):
        raise ValueError(f"label_ids must hold integer label ids, got dtype {flat.dtype}.")
    flat = flat.astype(np.int64)
    row_of = np.repeat(np.arange(len(rows)), lengths)
    out_of_range = np.flatnonzero((flat < 0) | (flat >= num_labels))
    if out_of_range.size:
        first = out_of_range[0]
        raise ValueError(
            f"label_ids row {int(row_of[first])} holds label id {int(flat[first])}, outside [0, {num_labels}); "
            "check num_labels and the label mapping."
        )
    multi_hot = np.zeros((len(rows), num_labels), dtype=np.uint8)
    multi_hot[row_of, flat] = 1
    duplicated = np.flatnonzero(multi_hot.sum(axis=1, dtype=np.int64) != lengths)
    if duplicated.size:
        raise ValueError(f"label_ids row {int(duplicated[0])} repeats a label id; each label may appear once.")
    return multi_hot
