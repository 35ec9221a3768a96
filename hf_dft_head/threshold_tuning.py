"""Tuning per-label decision thresholds on validation logits: numpy only, no model.

Given validation logits ``(N, n)`` and gold labels (arrays, or a stream of batches: :data:`LogitBatches`), the
thresholds that maximise micro- or macro-F1 (:func:`tune_thresholds`, :func:`tune_thresholds_stream`), the best
single threshold (:func:`best_uniform_threshold`), and the shift of a head's input bias that realises thresholds
in the column space of its last matrix (:func:`column_space_shift`). ``hf-dft tune-thresholds`` applies them to a
checkpoint (:mod:`hf_dft_head.thresholds`).

The tuner (:func:`tune_thresholds`) is exact on the validation split, vectorised over labels (column chunks, no
Python loop over labels): per label, the examples sorted by logit give every distinct decision ("predict the top
``j``") with its true positives by a cumulative sum. Macro-F1 is a sum of per-label terms ``2 tp / (pred + pos)``,
maximised label by label. Micro-F1 ``2 TP / (PRED + POS)`` couples the labels; Dinkelbach's method maximises it
exactly: for a value ``lam``, ``2 TP - lam (PRED + POS)`` separates over labels, and ``lam <- micro-F1 of its
maximiser`` increases strictly until it reaches the optimum (a few rounds), all in exact integer arithmetic.

Conventions: a threshold lies half-way between the lowest predicted and the highest unpredicted validation logit
(``z > t``, strict); ``EDGE_MARGIN`` beyond the extreme logit when a label predicts all or none of the examples.
Among equally good decisions the one predicting fewest examples wins (the highest threshold), so the result is
unique. A label with fewer than ``min_positives`` positive validation examples is not tuned: it gets the fallback
(``"global"``: the best single threshold for the metric over all labels; ``"zero"``: logit 0, i.e. 0.5).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .metrics.quality import f1_from_counts, label_ids_by_row, multi_hot_from_label_ids

METRICS = ("micro_f1", "macro_f1")
FALLBACKS = ("global", "zero")
#: Logits beyond the extreme validation logit of a label that predicts none / all of the validation examples.
EDGE_MARGIN = 1.0
#: Logits sorted per chunk of label columns (rows x labels); bounds the sweep's temporaries (~8 arrays of this).
CHUNK_ELEMENTS = 1 << 22
#: The best uniform offset for macro-F1 (``--keep-guarantee --metric macro_f1``) counts every (label, candidate)
#: pair, a (N, n)-sized problem: it runs on the dense shifted logits, refused beyond this many (about 1 GB of work).
DENSE_MACRO_OFFSET_ELEMENTS = 1 << 24


# ----------------------------------------------------------------------------------------------------------------
# The sweep: the decisions worth considering for every label, from one sort per label
# ----------------------------------------------------------------------------------------------------------------


def _check_problem(logits, targets) -> tuple[np.ndarray, np.ndarray]:
    logits = np.asarray(logits)
    targets = np.asarray(targets)
    if logits.ndim != 2 or logits.shape[0] == 0 or logits.shape[1] == 0:
        raise ValueError(f"logits must have shape (examples, labels) with both > 0, got {logits.shape}.")
    if targets.shape != logits.shape:
        raise ValueError(f"targets must have the shape of logits {logits.shape}, got {targets.shape}.")
    if not np.issubdtype(logits.dtype, np.floating) or not np.all(np.isfinite(logits)):
        raise ValueError("logits must be finite floating-point numbers (no NaN, no inf) to tune thresholds on.")
    if not np.all((targets == 0) | (targets == 1)):
        raise ValueError("targets must be multi-hot 0/1.")
    return logits, targets.astype(bool)


def _column_chunks(n_rows: int, n_cols: int) -> list[slice]:
    width = max(1, CHUNK_ELEMENTS // max(n_rows, 1))
    return [slice(start, min(start + width, n_cols)) for start in range(0, n_cols, width)]


def _count_below(rows: np.ndarray, which: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``#{q : rows[which[k], q] < values[k]}`` for every k: a binary search in all rows at once.

    ``rows`` ``(c, N)`` sorted ascending along axis 1; ``which``, ``values`` ``(K,)``. ``ceil(log2(N + 1))`` steps.
    """
    n_rows = rows.shape[1]
    low = np.zeros(values.size, dtype=np.int64)
    high = np.full(values.size, n_rows, dtype=np.int64)
    for _ in range(int(n_rows).bit_length()):
        middle = (low + high) // 2
        below = (low < high) & (rows[which, np.minimum(middle, n_rows - 1)] < values)
        low = np.where(below, middle + 1, low)
        high = np.where(below | (low >= high), high, middle)
    return low


def _separating_thresholds(lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """Thresholds ``t`` with ``lower < t < upper`` where floats allow (half-way), else ``t = lower``: ``z > t``
    then holds for ``upper`` and not for ``lower``. ``lower = -inf``: ``EDGE_MARGIN`` below ``upper``."""
    middle = lower / 2 + upper / 2
    # Adjacent floats have no float between them: the lower logit itself then separates (z > t is strict).
    inside = np.where((middle > lower) & (middle < upper), middle, lower)
    below = np.minimum(upper - EDGE_MARGIN, np.nextafter(upper, -np.inf))
    return np.where(np.isneginf(lower), below, inside)


@dataclass
class _Candidates:
    """The decisions worth considering for some labels, besides predicting none.

    Predicting exactly the examples whose logit is ``>= v`` for ``v`` the logit of one of the label's positives: an
    F1 never gains from a further negative (``2 tp / (pred + pos)`` falls or stays 0), so an optimal decision, and
    among optimal ones the one predicting fewest examples, is "none" or one of these. Arrays ``(K,)`` sorted by
    label, then by ``v``: ``labels`` (column ids), ``true_positives``, ``predicted`` (examples predicted, ties at
    ``v`` included) and ``thresholds`` (predict exactly those: between ``v`` and the next lower logit).
    ``positives`` ``(c,)`` per label; ``none_thresholds`` ``(c,)``: above every logit of the label.
    """

    labels: np.ndarray
    true_positives: np.ndarray
    predicted: np.ndarray
    thresholds: np.ndarray
    positives: np.ndarray
    none_thresholds: np.ndarray


def _positive_candidates(label: np.ndarray, values: np.ndarray, n_labels: int) -> tuple[np.ndarray, ...]:
    """The distinct candidate values of each label from its positives alone.

    ``label``, ``values`` ``(P,)``: the label and the logit of every positive (any order). Returns ``(labels, values,
    true positives)`` ``(K,)`` sorted by label then value -- "predict the logits >= v" for each distinct positive
    logit ``v`` of a label, with the positives it catches -- and ``positives`` ``(n_labels,)``.
    """
    order = np.lexsort((values, label))
    label, values = label[order], values[order]
    index = np.arange(label.size)
    first_of_tie = np.ones(label.size, dtype=bool)
    first_of_tie[1:] = (label[1:] != label[:-1]) | (values[1:] != values[:-1])
    positives = np.bincount(label, minlength=n_labels)
    label_start = np.searchsorted(label, label, side="left")
    tie_start = np.maximum.accumulate(np.where(first_of_tie, index, 0))
    true_positives = positives[label] - (tie_start - label_start)  # the positives with a logit >= v
    return label[first_of_tie], values[first_of_tie], true_positives[first_of_tie].astype(np.int64), positives


def _above_the_top(top: np.ndarray) -> np.ndarray:
    """Thresholds ``(c,)`` that predict nothing: ``EDGE_MARGIN`` above each label's highest logit ``top``."""
    return np.maximum(top + EDGE_MARGIN, np.nextafter(top, np.inf))


#: A validation split as a stream: a callable that returns a fresh iterator of ``(logits (b, n), gold)`` batches,
#: ``gold`` ``b`` label-id lists. It is called once per pass over the data (the tuner makes two to four).
LogitBatches = Callable[[], Iterable[tuple[Any, Sequence[Sequence[int]]]]]


def _checked_batch(logits, gold, n_labels: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One batch as ``(logits (b, n) float64, positive rows (p,), positive labels (p,))``; refuses bad input."""
    logits = np.asarray(logits)
    if logits.ndim != 2 or logits.shape[1] != n_labels or logits.shape[0] != len(gold):
        raise ValueError(
            f"a batch of logits must have shape ({len(gold)}, {n_labels}) (one row per gold label set), got "
            f"{logits.shape}."
        )
    if not np.issubdtype(logits.dtype, np.floating) or not np.all(np.isfinite(logits)):
        raise ValueError("logits must be finite floating-point numbers (no NaN, no inf) to tune thresholds on.")
    sets = [np.asarray(list(ids), dtype=np.int64).reshape(-1) for ids in gold]
    rows = np.repeat(np.arange(len(sets), dtype=np.int64), [len(ids) for ids in sets])
    labels = np.concatenate(sets) if sets else np.zeros(0, dtype=np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= n_labels):
        raise ValueError(f"gold label ids must lie in [0, {n_labels}), got one outside.")
    if np.unique(rows * n_labels + labels).size != labels.size:
        raise ValueError("a gold label set holds a label id twice.")
    return logits.astype(np.float64), rows, labels


@dataclass
class _Scan:
    """Pass 1 over the stream: ``rows`` N, and per positive ``labels``, ``values`` ``(P,)``; ``top`` ``(n,)``."""

    rows: int
    labels: np.ndarray
    values: np.ndarray
    top: np.ndarray


def _scan(batches: LogitBatches, n_labels: int) -> _Scan:
    """Pass 1: the positives' logits (sparse) and each label's highest logit."""
    rows, labels, values = 0, [], []
    top = np.full(n_labels, -np.inf)
    for logits, gold in batches():
        logits, positive_rows, positive_labels = _checked_batch(logits, gold, n_labels)
        rows += logits.shape[0]
        labels.append(positive_labels)
        values.append(logits[positive_rows, positive_labels])
        np.maximum(top, logits.max(axis=0, initial=-np.inf), out=top)
    if rows == 0:
        raise ValueError("The tuning data has no example: there is nothing to tune thresholds on.")
    return _Scan(rows, np.concatenate(labels), np.concatenate(values), top)


def _count_from_above(
    batches: LogitBatches,
    n_labels: int,
    label: np.ndarray,
    values: np.ndarray,
    pooled: np.ndarray | None,
) -> tuple[np.ndarray, ...]:
    """Pass 2: for each candidate ``(label[j], values[j])`` ``(K,)`` the examples whose logit of that label is below
    ``values[j]`` and the highest such logit (``-inf``: none); the same over all ``N n`` logits for the values
    ``pooled`` ``(V,)`` when given. Per batch only the columns with a candidate are sorted: ``(c, b)``.
    """
    columns = np.unique(label)
    which = np.searchsorted(columns, label)
    below, lower = np.zeros(label.size, dtype=np.int64), np.full(label.size, -np.inf)
    pooled_below = np.zeros(0 if pooled is None else pooled.size, dtype=np.int64)
    pooled_lower = np.full(pooled_below.size, -np.inf)
    for logits, gold in batches():
        logits = _checked_batch(logits, gold, n_labels)[0]
        for chunk in _column_chunks(logits.shape[0], columns.size):
            rows = np.sort(logits[:, columns[chunk]].T, axis=1)  # (c, b) ascending
            take = (which >= chunk.start) & (which < chunk.stop)
            count = _count_below(rows, which[take] - chunk.start, values[take])
            below[take] += count
            found = np.where(count > 0, rows[which[take] - chunk.start, np.maximum(count - 1, 0)], -np.inf)
            lower[take] = np.maximum(lower[take], found)
        if pooled is not None:
            flat = np.sort(logits, axis=None)
            count = np.searchsorted(flat, pooled, side="left")
            pooled_below += count
            np.maximum(pooled_lower, np.where(count > 0, flat[np.maximum(count - 1, 0)], -np.inf), out=pooled_lower)
    return below, lower, pooled_below, pooled_lower


def _predicted_counts(batches: LogitBatches, n_labels: int, threshold_sets: Sequence[np.ndarray]) -> list[np.ndarray]:
    """A pass: for each thresholds ``t`` ``(n,)`` of ``threshold_sets``, the examples with ``logit > t`` per label."""
    counts = [np.zeros(n_labels, dtype=np.int64) for _ in threshold_sets]
    for logits, gold in batches():
        logits = _checked_batch(logits, gold, n_labels)[0]
        for count, thresholds in zip(counts, threshold_sets):
            count += np.count_nonzero(logits > thresholds, axis=0)
    return counts


def _f1_at(scan: _Scan, thresholds: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """Micro- and macro-F1 of the decisions ``logit > thresholds`` that predict ``predicted`` ``(n,)`` per label."""
    n_labels = thresholds.size
    true_positives = np.bincount(scan.labels[scan.values > thresholds[scan.labels]], minlength=n_labels)
    positives = np.bincount(scan.labels, minlength=n_labels)
    return f1_from_counts(true_positives, predicted - true_positives, positives - true_positives)


def _shifted(batches: LogitBatches, shift: np.ndarray) -> LogitBatches:
    """The stream of ``logits - shift`` (in float64), ``shift`` ``(n,)``."""

    def shifted() -> Iterator[tuple[np.ndarray, Sequence[Sequence[int]]]]:
        for logits, gold in batches():
            yield np.asarray(logits, dtype=np.float64) - shift, gold

    return shifted


def _array_batches(logits: np.ndarray, targets: np.ndarray) -> LogitBatches:
    """``(N, n)`` arrays as a stream of row chunks (of about ``CHUNK_ELEMENTS`` logits) with gold id lists."""
    step = max(1, CHUNK_ELEMENTS // logits.shape[1])

    def batches() -> Iterator[tuple[np.ndarray, list[np.ndarray]]]:
        for start in range(0, logits.shape[0], step):
            yield logits[start : start + step], label_ids_by_row(targets[start : start + step])

    return batches


def _stream_candidates(batches: LogitBatches, n_labels: int, scan: _Scan, *, pooled: bool) -> tuple[Any, Any]:
    """The :class:`_Candidates` of every label (and, with ``pooled``, of all labels as one column, whose F1 is the
    micro-F1 of a single threshold), from one pass over the stream."""
    label, values, true_positives, positives = _positive_candidates(scan.labels, scan.values, n_labels)
    one = _positive_candidates(np.zeros(scan.labels.size, dtype=np.int64), scan.values, 1) if pooled else None
    below, lower, pooled_below, pooled_lower = _count_from_above(
        batches, n_labels, label, values, None if one is None else one[1]
    )
    per_label = _Candidates(
        labels=label,
        true_positives=true_positives,
        predicted=(scan.rows - below).astype(np.int64),
        thresholds=_separating_thresholds(lower, values),
        positives=positives.astype(np.int64),
        none_thresholds=_above_the_top(scan.top),
    )
    if one is None:
        return per_label, None
    return per_label, _Candidates(
        labels=one[0],
        true_positives=one[2],
        predicted=(scan.rows * n_labels - pooled_below).astype(np.int64),
        thresholds=_separating_thresholds(pooled_lower, one[1]),
        positives=one[3].astype(np.int64),
        none_thresholds=_above_the_top(scan.top.max(keepdims=True)),
    )


def _best_per_label(candidates: _Candidates, score: np.ndarray, n_labels: int) -> tuple[np.ndarray, np.ndarray]:
    """Per label, the candidate with the highest ``score``, fewest predictions among equals: ``(index, found)``.

    ``index`` ``(c,)`` into the candidates (0 where ``found`` is False: a label without positives).
    """
    order = np.lexsort((candidates.predicted, -score, candidates.labels))
    labels, first = np.unique(candidates.labels[order], return_index=True)
    index = np.zeros(n_labels, dtype=np.int64)
    found = np.zeros(n_labels, dtype=bool)
    index[labels], found[labels] = order[first], True
    return index, found


def _macro_choice(candidates: _Candidates, n_labels: int) -> tuple[np.ndarray, np.ndarray]:
    """Per label the thresholds maximising its F1 ``2 tp / (pred + pos)``, and which labels have positives."""
    # Distinct fractions with denominators <= 2N differ by >= 1/(4 N^2), far above float64 rounding for any
    # realistic N, and equal fractions round to equal floats: comparing the floats is exact.
    f1 = 2.0 * candidates.true_positives / (candidates.predicted + candidates.positives[candidates.labels])
    index, found = _best_per_label(candidates, f1, n_labels)  # F1 > 0 here: "none" (F1 = 0) never wins
    return np.where(found, candidates.thresholds[index], candidates.none_thresholds), found


def _dinkelbach_choice(
    candidates: _Candidates, n_labels: int, numerator: int, denominator: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per label the decision maximising ``2 tp - lam pred`` (``lam = numerator / denominator``), fewest predictions
    among equals: ``(thresholds, true positives, predicted)`` ``(c,)`` each; "none" where no candidate beats 0."""
    exact = 4 * (int(candidates.predicted.max(initial=0)) + 1) * max(numerator, denominator, 1) < 2**62
    if exact:  # integers: exact comparisons
        score = 2 * candidates.true_positives * denominator - numerator * candidates.predicted
    else:  # beyond int64: float64 (near-ties may then be broken by rounding)
        score = 2.0 * candidates.true_positives - (numerator / denominator) * candidates.predicted
    index, found = _best_per_label(candidates, score, n_labels)
    take = found & (score[index] > 0)  # "none" scores 0 with 0 predictions: it wins ties
    return (
        np.where(take, candidates.thresholds[index], candidates.none_thresholds),
        np.where(take, candidates.true_positives[index], 0),
        np.where(take, candidates.predicted[index], 0),
    )


@dataclass
class TunedThresholds:
    """The result of :func:`tune_thresholds`.

    ``thresholds`` ``(n,)`` float64 logit thresholds; ``metric`` and its ``value`` on the tuning data at these
    thresholds; ``fallback_labels`` the label ids that were not tuned (fewer than ``min_positives`` positives) and
    got ``fallback_threshold`` (``None`` when there are none); ``rounds`` of Dinkelbach's method (micro-F1).
    """

    thresholds: np.ndarray
    metric: str
    value: float
    fallback_labels: list[int]
    fallback_threshold: float | None
    rounds: int = 0


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, got {value!r}.")


def tune_thresholds(
    logits, targets, metric: str = "micro_f1", *, fallback: str = "global", min_positives: int = 1
) -> TunedThresholds:
    """Per-label logit thresholds maximising ``metric`` (``"micro_f1"`` or ``"macro_f1"``) on ``(logits, targets)``.

    Args:
        logits: ``(N, n)`` validation logits (float).
        targets: ``(N, n)`` multi-hot 0/1 gold labels (rows with no label are fine: every label is negative there).
        metric: what to maximise; the optimum over all per-label thresholds is found exactly (module docstring).
        fallback: threshold of the labels with fewer than ``min_positives`` positives: ``"global"`` (the best single
            threshold for micro-F1 over all labels, :func:`best_uniform_threshold`) or ``"zero"`` (logit 0).
        min_positives: positives a label needs in the tuning data to get a threshold of its own (>= 1).

    Returns:
        :class:`TunedThresholds`; labels tuned for micro-F1 are optimal given the fallback labels' decisions.
        The same as :func:`tune_thresholds_stream` on the rows in batches of any size.
    """
    logits, targets = _check_problem(logits, targets)
    return tune_thresholds_stream(
        _array_batches(logits, targets), logits.shape[1], metric, fallback=fallback, min_positives=min_positives
    )


def tune_thresholds_stream(
    batches: LogitBatches,
    num_labels: int,
    metric: str = "micro_f1",
    *,
    fallback: str = "global",
    min_positives: int = 1,
) -> TunedThresholds:
    """:func:`tune_thresholds` over a stream of batches, with memory ``O(P + n)`` for ``P`` positive labels.

    Args:
        batches: a callable giving a fresh iterator of ``(logits (b, n), gold)`` batches, ``gold`` ``b`` label-id
            lists (see :data:`LogitBatches`); it is called once per pass: 3 passes (macro-F1), 4 (micro-F1 with
            fallback labels). Each batch must be the same at every call.
        num_labels: ``n``.
        metric, fallback, min_positives: as :func:`tune_thresholds`.

    Pass 1 keeps the logit of every positive and each label's highest logit; the candidates ("predict the logits
    >= v", ``v`` a positive's logit) follow from those. Pass 2 counts, per candidate, the examples below ``v`` and the
    highest logit below it, sorting per batch only the columns of labels with a positive. Then as the module
    docstring says, and a last pass counts the decisions at the tuned thresholds for ``value``.
    """
    check_choice("metric", metric, METRICS)
    check_choice("fallback", fallback, FALLBACKS)
    if isinstance(min_positives, bool) or not isinstance(min_positives, (int, np.integer)) or min_positives < 1:
        raise ValueError(f"min_positives must be an integer >= 1, got {min_positives!r}.")
    n_cols = int(num_labels)
    scan = _scan(batches, n_cols)
    positives = np.bincount(scan.labels, minlength=n_cols)
    if not positives.any():
        raise ValueError("The tuning data has no positive label at all: there is nothing to tune thresholds on.")
    tuned = positives >= min_positives
    candidates, pooled = _stream_candidates(batches, n_cols, scan, pooled=fallback == "global" and not tuned.all())
    fallback_threshold = None
    if not tuned.all():
        fallback_threshold = float(_macro_choice(pooled, 1)[0][0]) if fallback == "global" else 0.0
    thresholds = np.full(n_cols, fallback_threshold if fallback_threshold is not None else 0.0)
    rounds = 0
    if metric == "macro_f1":
        thresholds = np.where(tuned, _macro_choice(candidates, n_cols)[0], thresholds)
    else:
        # Labels left to the fallback contribute fixed counts to TP and PRED.
        fixed = ~tuned
        fixed_tp = fixed_predicted = 0
        if fixed.any():
            fixed_predicted = int(_predicted_counts(batches, n_cols, [thresholds])[0][fixed].sum())
            caught = scan.values > thresholds[scan.labels]
            fixed_tp = int(np.count_nonzero(caught & fixed[scan.labels]))
        total_positives = int(positives.sum())
        numerator, denominator = 0, 1  # lam = 0: the first round maximises TP with the fewest predictions
        while True:
            rounds += 1
            choice, tp, pred = _dinkelbach_choice(candidates, n_cols, numerator, denominator)
            true_positives = fixed_tp + int(tp[tuned].sum())
            predicted = fixed_predicted + int(pred[tuned].sum())
            new_numerator, new_denominator = 2 * true_positives, predicted + total_positives
            if new_numerator * denominator == numerator * new_denominator:  # lam did not grow: it is the optimum
                break
            numerator, denominator = new_numerator, new_denominator
        thresholds = np.where(tuned, choice, thresholds)
    value = _f1_at(scan, thresholds, _predicted_counts(batches, n_cols, [thresholds])[0])[metric]
    return TunedThresholds(
        thresholds=thresholds,
        metric=metric,
        value=float(value),
        fallback_labels=np.flatnonzero(~tuned).tolist(),
        fallback_threshold=fallback_threshold,
        rounds=rounds,
    )


def best_uniform_threshold_stream(batches: LogitBatches, num_labels: int) -> float:
    """:func:`best_uniform_threshold` for micro-F1 over a stream (two passes, memory ``O(P + n)``)."""
    scan = _scan(batches, int(num_labels))
    if scan.labels.size == 0:
        return float(_above_the_top(scan.top.max(keepdims=True))[0])
    pooled = _stream_candidates(batches, int(num_labels), scan, pooled=True)[1]
    return float(_macro_choice(pooled, 1)[0][0])  # the F1 of the one pooled column is the micro-F1


def best_uniform_threshold(logits, targets, metric: str = "micro_f1") -> float:
    """The single logit threshold for all labels that maximises ``metric`` on ``(logits, targets)`` ``(N, n)``.

    Candidates: just below each positive's logit (as per label, a further negative never raises an F1), or above
    every logit. Micro-F1: the ``N n`` logits sorted once, each candidate's counts found by binary search.
    Macro-F1: the logits of the labels with positives binned between consecutive candidates, each label's F1 at
    every candidate from its cumulative counts, summed in float64 (candidates equal up to rounding may be ordered
    either way). Memory ``O(N n)``. Ties: the highest threshold (fewest predictions) wins.
    """
    check_choice("metric", metric, METRICS)
    logits, targets = _check_problem(logits, targets)
    if metric == "micro_f1":
        return best_uniform_threshold_stream(_array_batches(logits, targets), logits.shape[1])
    positives = targets.sum(axis=0)
    values = np.unique(logits[targets].astype(np.float64))  # (K,) ascending: "predict every logit >= v"
    if values.size == 0:
        top = float(logits.max())
        return max(top + EDGE_MARGIN, float(np.nextafter(top, np.inf)))
    with_positives = np.flatnonzero(positives)
    entries = logits[:, with_positives].astype(np.float64)  # (N, n') the labels whose F1 can be > 0
    hits = targets[:, with_positives]
    # Candidate k (descending: k = 0 is the highest v) predicts an entry w iff w >= v_k, i.e. from k = bin(w) on.
    bins = values.size - np.searchsorted(values, entries, side="right")  # (N, n') in 0..K; K: never predicted
    label = np.broadcast_to(np.arange(with_positives.size), entries.shape)
    keys = label.ravel() * (values.size + 1) + bins.ravel()
    pairs, inverse = np.unique(keys, return_inverse=True)
    counts = np.bincount(inverse, minlength=pairs.size)
    hit_counts = np.bincount(inverse, weights=hits.ravel(), minlength=pairs.size)
    pair_label, pair_bin = pairs // (values.size + 1), pairs % (values.size + 1)
    start = np.searchsorted(pair_label, pair_label, side="left")
    predicted = np.cumsum(counts) - np.concatenate([[0], np.cumsum(counts)])[start]
    true_positives = np.cumsum(hit_counts) - np.concatenate([[0.0], np.cumsum(hit_counts)])[start]
    f1 = 2.0 * true_positives / (predicted + positives[with_positives][pair_label])
    previous = np.where(np.arange(pairs.size) > start, np.concatenate([[0.0], f1[:-1]]), 0.0)
    keep = pair_bin < values.size
    macro = np.cumsum(np.bincount(pair_bin[keep], weights=(f1 - previous)[keep], minlength=values.size))  # (K,)
    best = int(np.argmax(macro))  # the first maximum: the highest v, fewest predictions
    if macro[best] <= 0:  # nothing beats predicting none
        top = float(logits.max())
        return max(top + EDGE_MARGIN, float(np.nextafter(top, np.inf)))
    chosen = values[values.size - 1 - best]
    below = logits[logits < chosen]
    lower = np.array([below.max() if below.size else -np.inf], dtype=np.float64)
    return float(_separating_thresholds(lower, np.array([chosen]))[0])


def f1_of_thresholds_stream(batches: LogitBatches, num_labels: int, threshold_sets: Sequence[np.ndarray]) -> list[dict]:
    """Micro- and macro-F1 of ``logit > t`` for each ``t`` ``(n,)`` of ``threshold_sets``, in one pass."""
    predicted = [np.zeros(num_labels, dtype=np.int64) for _ in threshold_sets]
    true_positives = [np.zeros(num_labels, dtype=np.int64) for _ in threshold_sets]
    positives = np.zeros(num_labels, dtype=np.int64)
    for logits, gold in batches():
        logits, rows, labels = _checked_batch(logits, gold, num_labels)
        positives += np.bincount(labels, minlength=num_labels)
        for thresholds, pred, tp in zip(threshold_sets, predicted, true_positives):
            pred += np.count_nonzero(logits > thresholds, axis=0)
            tp += np.bincount(labels[logits[rows, labels] > thresholds[labels]], minlength=num_labels)
    return [f1_from_counts(tp, pred - tp, positives - tp) for pred, tp in zip(predicted, true_positives)]


# ----------------------------------------------------------------------------------------------------------------
# Keeping the guarantee: thresholds in the column space of the head's last matrix
# ----------------------------------------------------------------------------------------------------------------


def project_thresholds(weight, thresholds) -> tuple[np.ndarray, np.ndarray]:
    """``(a, W a)``: the least-squares ``a`` ``(m,)`` with ``W a ~ t`` for ``weight`` ``W`` ``(n, m)``, ``t`` ``(n,)``.

    ``W a`` is the closest vector of thresholds a change of the head's input bias can realise: ``z - W a = W (x - a)``.
    """
    weight = np.asarray(weight, dtype=np.float64)
    thresholds = np.asarray(thresholds, dtype=np.float64)
    if weight.ndim != 2 or thresholds.shape != (weight.shape[0],):
        raise ValueError(f"weight must be (n, m) and thresholds (n,), got {weight.shape} and {thresholds.shape}.")
    shift = np.linalg.lstsq(weight, thresholds, rcond=None)[0]
    return shift, weight @ shift


def uniform_direction(weight) -> np.ndarray | None:
    """``u`` ``(m,)`` with ``W u = 1`` (every logit moves by 1) when the all-ones vector is in ``W``'s column space
    (to ``1e-9`` relative: a DFT head's constant column), else ``None``."""
    weight = np.asarray(weight, dtype=np.float64)
    ones = np.ones(weight.shape[0])
    direction = np.linalg.lstsq(weight, ones, rcond=None)[0]
    return direction if np.max(np.abs(weight @ direction - ones)) <= 1e-9 else None


def column_space_shift(
    weight, thresholds, logits, targets, metric: str = "micro_f1", *, retune_offset: bool = True
) -> tuple[np.ndarray, float]:
    """``(a, offset)``: the shift ``a`` ``(m,)`` of the head's input bias that realises thresholds ``W a`` close to
    ``thresholds`` ``(n,)``, and the uniform offset included in it.

    ``a`` is the least-squares fit :func:`project_thresholds`; then, with ``retune_offset`` and the all-ones vector in
    ``W``'s column space (:func:`uniform_direction`: a DFT head), the one threshold the fit leaves free, a uniform
    offset, is re-tuned for ``metric`` on the validation ``logits - W a`` (``(N, n)``, with ``targets``).
    """
    logits, targets = _check_problem(logits, targets)
    batches = _array_batches(logits, targets)
    return column_space_shift_stream(weight, thresholds, batches, metric, retune_offset=retune_offset)


def column_space_shift_stream(
    weight, thresholds, batches: LogitBatches, metric: str = "micro_f1", *, retune_offset: bool = True
) -> tuple[np.ndarray, float]:
    """:func:`column_space_shift` with the validation data as a stream (:data:`LogitBatches`).

    Micro-F1 streams (memory ``O(P + n)``); the macro-F1 offset gathers the shifted logits ``(N, n)`` and is refused
    with a ``ValueError`` beyond ``DENSE_MACRO_OFFSET_ELEMENTS`` of them.
    """
    shift, projected = project_thresholds(weight, thresholds)
    direction = uniform_direction(weight)
    if not retune_offset or direction is None:
        return shift, 0.0
    shifted = _shifted(batches, projected)
    if metric == "micro_f1":
        offset = best_uniform_threshold_stream(shifted, projected.size)
    else:
        check_choice("metric", metric, METRICS)
        logits, gold = [], []
        for batch, labels in shifted():
            logits.append(batch)
            gold.extend(labels)
            if sum(len(rows) for rows in logits) * projected.size > DENSE_MACRO_OFFSET_ELEMENTS:
                raise ValueError(
                    f"--keep-guarantee --metric macro_f1 re-tunes the uniform offset on the whole validation logits, "
                    f"which is limited to {DENSE_MACRO_OFFSET_ELEMENTS:,} examples x labels; this split has more. Use "
                    "--metric micro_f1 (streams at any size), or fewer validation examples."
                )
        dense = np.concatenate(logits)
        offset = best_uniform_threshold(dense, multi_hot_from_label_ids(gold, projected.size), metric)
    return shift + offset * direction, offset


__all__ = [
    "FALLBACKS",
    "METRICS",
    "LogitBatches",
    "TunedThresholds",
    "best_uniform_threshold",
    "best_uniform_threshold_stream",
    "check_choice",
    "column_space_shift",
    "column_space_shift_stream",
    "f1_of_thresholds_stream",
    "project_thresholds",
    "tune_thresholds",
    "tune_thresholds_stream",
    "uniform_direction",
]
