"""Per-label decision thresholds tuned on a validation split: ``hf-dft tune-thresholds CHECKPOINT``.

A multi-label classifier predicts label ``i`` when its logit ``z_i`` exceeds a threshold ``t_i``; 0 (sigmoid 0.5)
for every label is rarely the best choice for F1, so the paper's code and LibMultiLabel tune one threshold per label
on validation data. Two ways to apply them:

* **per label** (default): ``t`` goes into ``config.logit_thresholds``, which ``model.predict``, the
  ``multi-label-classification`` pipeline, ``hf-dft predict``/``evaluate``/``audit`` apply. The model then predicts
  ``z - t > 0``: a bias ``-t`` that, unless it is uniform, lies outside a DFT head's column space, so the
  sign-change rule no longer decides which sets the model outputs; the audit decides every set by LP. (Finite
  thresholds still keep every set the guarantee names: the head is linear in its input, and ``W (s x) - t`` has
  the signs of ``W x`` for large ``s``; see ``docs/thresholds.md``.)
* **keep the guarantee** (``--keep-guarantee``): ``t`` is projected onto the column space of the head's last matrix
  ``W`` (least squares, ``t ~ W a``) and ``a`` is folded into the bias of the head's input (``x = P h + c`` becomes
  ``P h + (c - a)``), so the logits become ``z - W a`` and every region of the head is kept: no thresholds in the
  config (plain ``sigmoid > 0.5`` in any consumer gives the tuned decisions), the weights change, the rule still
  decides, and the checkpoint certifies as before. A uniform offset (``G``'s constant column) is then re-tuned on
  the projected logits.

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

import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import audit
from .audit_report import AUDIT_FIGURE_NAME
from .checkpoints import CERTIFICATE_NAME, bound_files, load_checkpoint
from .data import NAMED_DATASETS
from .metrics.quality import macro_f1, micro_f1, multi_hot_from_label_ids
from .output_checks import OutputLocationError, check_writable_folder, write_json
from .prediction import decision_thresholds
from .sigmoid_head import find_sigmoid_head, model_label_names
from .version import __version__

logger = logging.getLogger(__name__)

METRICS = ("micro_f1", "macro_f1")
FALLBACKS = ("global", "zero")
THRESHOLDS_RECORD = "thresholds.json"
#: Logits beyond the extreme validation logit of a label that predicts none / all of the validation examples.
EDGE_MARGIN = 1.0
#: Logits sorted per chunk of label columns (rows x labels); bounds the sweep's temporaries (~8 arrays of this).
CHUNK_ELEMENTS = 1 << 22
#: Splits the tuner refuses: numbers measured on the data the thresholds were fitted to say nothing.
REFUSED_SPLITS = ("test",)
# Weight files save_pretrained writes; keep-guarantee replaces exactly these.
_WEIGHT_SUFFIXES = (".safetensors", ".bin")


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


def _candidates(logits: np.ndarray, targets: np.ndarray) -> _Candidates:
    """The :class:`_Candidates` of the ``c`` columns of ``logits``, ``targets`` ``(N, c)``."""
    rows = np.sort(logits.T.astype(np.float64), axis=1)  # (c, N) ascending
    label, example = np.nonzero(targets.T)
    values = logits[example, label].astype(np.float64)
    order = np.lexsort((values, label))
    label, values = label[order], values[order]
    index = np.arange(label.size)
    first_of_tie = np.ones(label.size, dtype=bool)
    first_of_tie[1:] = (label[1:] != label[:-1]) | (values[1:] != values[:-1])
    positives = np.bincount(label, minlength=logits.shape[1])
    label_start = np.searchsorted(label, label, side="left")
    tie_start = np.maximum.accumulate(np.where(first_of_tie, index, 0))
    true_positives = positives[label] - (tie_start - label_start)  # the positives with a logit >= v
    label, values, true_positives = label[first_of_tie], values[first_of_tie], true_positives[first_of_tie]
    below = _count_below(rows, label, values)
    lower = np.where(below > 0, rows[label, np.maximum(below - 1, 0)], -np.inf)
    top = rows[:, -1]
    return _Candidates(
        labels=label,
        true_positives=true_positives.astype(np.int64),
        predicted=(logits.shape[0] - below).astype(np.int64),
        thresholds=_separating_thresholds(lower, values),
        positives=positives.astype(np.int64),
        none_thresholds=np.maximum(top + EDGE_MARGIN, np.nextafter(top, np.inf)),
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


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
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
    """
    _check_choice("metric", metric, METRICS)
    _check_choice("fallback", fallback, FALLBACKS)
    if isinstance(min_positives, bool) or not isinstance(min_positives, (int, np.integer)) or min_positives < 1:
        raise ValueError(f"min_positives must be an integer >= 1, got {min_positives!r}.")
    logits, targets = _check_problem(logits, targets)
    n_rows, n_cols = logits.shape
    positives = targets.sum(axis=0)
    if not positives.any():
        raise ValueError("The tuning data has no positive label at all: there is nothing to tune thresholds on.")
    tuned = positives >= min_positives
    fallback_threshold = None
    if not tuned.all():
        fallback_threshold = best_uniform_threshold(logits, targets, "micro_f1") if fallback == "global" else 0.0
    thresholds = np.full(n_cols, fallback_threshold if fallback_threshold is not None else 0.0)
    chunks = [
        (columns, _candidates(logits[:, columns], targets[:, columns])) for columns in _column_chunks(*logits.shape)
    ]
    rounds = 0
    if metric == "macro_f1":
        for columns, candidates in chunks:
            thresholds[columns] = np.where(
                tuned[columns], _macro_choice(candidates, columns.stop - columns.start)[0], thresholds[columns]
            )
    else:
        # Labels left to the fallback contribute fixed counts to TP and PRED.
        fixed = ~tuned
        fixed_decisions = logits[:, fixed] > thresholds[fixed]
        fixed_tp = int((fixed_decisions & targets[:, fixed]).sum())
        fixed_predicted = int(fixed_decisions.sum())
        total_positives = int(positives.sum())
        numerator, denominator = 0, 1  # lam = 0: the first round maximises TP with the fewest predictions
        choice = np.zeros(n_cols)
        while True:
            rounds += 1
            true_positives, predicted = fixed_tp, fixed_predicted
            for columns, candidates in chunks:
                chosen, tp, pred = _dinkelbach_choice(candidates, columns.stop - columns.start, numerator, denominator)
                choice[columns] = chosen
                true_positives += int(tp[tuned[columns]].sum())
                predicted += int(pred[tuned[columns]].sum())
            new_numerator, new_denominator = 2 * true_positives, predicted + total_positives
            if new_numerator * denominator == numerator * new_denominator:  # lam did not grow: it is the optimum
                break
            numerator, denominator = new_numerator, new_denominator
        thresholds = np.where(tuned, choice, thresholds)
    decisions = logits > thresholds
    value = micro_f1(decisions, targets) if metric == "micro_f1" else macro_f1(decisions, targets)
    return TunedThresholds(
        thresholds=thresholds,
        metric=metric,
        value=float(value),
        fallback_labels=np.flatnonzero(~tuned).tolist(),
        fallback_threshold=fallback_threshold,
        rounds=rounds,
    )


def best_uniform_threshold(logits, targets, metric: str = "micro_f1") -> float:
    """The single logit threshold for all labels that maximises ``metric`` on ``(logits, targets)`` ``(N, n)``.

    Candidates: just below each positive's logit (as per label, a further negative never raises an F1), or above
    every logit. Micro-F1: the ``N n`` logits sorted once, each candidate's counts found by binary search.
    Macro-F1: the logits of the labels with positives binned between consecutive candidates, each label's F1 at
    every candidate from its cumulative counts, summed in float64 (candidates equal up to rounding may be ordered
    either way). Memory ``O(N n)``. Ties: the highest threshold (fewest predictions) wins.
    """
    _check_choice("metric", metric, METRICS)
    logits, targets = _check_problem(logits, targets)
    if metric == "micro_f1":
        candidates = _candidates(logits.reshape(-1, 1), targets.reshape(-1, 1))  # one column: all labels at once
        threshold, found = _macro_choice(candidates, 1)  # the F1 of that column is the micro-F1
        return float(threshold[0])
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
    shift, projected = project_thresholds(weight, thresholds)
    direction = uniform_direction(weight)
    if not retune_offset or direction is None:
        return shift, 0.0
    offset = best_uniform_threshold(np.asarray(logits) - projected, targets, metric)
    return shift + offset * direction, offset


def input_bias(model) -> torch.nn.Parameter:
    """The bias of the head's input space: ``c`` of a DFT head's ``x = P h + c``, ``b1`` of a bottleneck's middle
    layer. A dense head (and a stock classifier) reads the encoder's features directly and has none."""
    kind = getattr(model.config, "head_kind", None)
    if kind == "dft":
        return model.head.bias
    if kind == "bottleneck":
        return model.head.down.bias
    raise ValueError(
        f"--keep-guarantee folds the thresholds into the bias of the head's input space; a "
        f"{'dense head' if kind == 'dense' else 'stock classifier'} reads the encoder's features directly and has no "
        "such bias (nor a guarantee to keep). Tune without --keep-guarantee: the thresholds go into config.json."
    )


# ----------------------------------------------------------------------------------------------------------------
# The command: tune on a checkpoint's validation split, write a tuned checkpoint
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class ThresholdOptions:
    """Options of ``hf-dft tune-thresholds`` (the data options are :class:`~hf_dft_head.data.DataArguments`)."""

    metric: str = field(default="micro_f1", metadata={"help": f"what the thresholds maximise: {', '.join(METRICS)}"})
    keep_guarantee: bool = field(
        default=False,
        metadata={
            "help": "project the thresholds onto the head's column space and fold them into the bias of its input "
            "(DFT, bottleneck): the weights change, config.json gets no thresholds and the guarantee is kept"
        },
    )
    fallback: str = field(
        default="global",
        metadata={
            "help": "threshold of labels with too few positives in validation: global (the single threshold that "
            "maximises micro-F1 over all labels) or zero (logit 0, probability 0.5)"
        },
    )
    min_positives: int = field(
        default=1, metadata={"help": "positive validation examples a label needs to get a threshold of its own"}
    )
    output_dir: str | None = field(
        default=None,
        metadata={
            "help": "write the tuned checkpoint here, a copy without certificate (default: CHECKPOINT itself, refused "
            "when it holds a certificate)"
        },
    )
    seed: int = field(
        default=42, metadata={"help": "seed that carves the validation split when the data has none (as in training)"}
    )
    batch_size: int = field(default=32, metadata={"help": "batch size for the validation logits"})
    max_length: int = field(default=128, metadata={"help": "tokenizer max length"})
    assume_multi_label: bool = field(
        default=False, metadata={"help": "treat a checkpoint without problem_type as a sigmoid multi-label model"}
    )

    def __post_init__(self) -> None:
        _check_choice("--metric", self.metric, METRICS)
        _check_choice("--fallback", self.fallback, FALLBACKS)
        for name in ("min_positives", "batch_size", "max_length"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}.")


def _split_metrics(logits: np.ndarray, targets: np.ndarray, thresholds: np.ndarray) -> dict[str, float]:
    decisions = logits > thresholds
    return {"micro_f1": micro_f1(decisions, targets), "macro_f1": macro_f1(decisions, targets)}


def _output_folder(checkpoint: Path, output_dir: str | None) -> Path:
    """Where the tuned checkpoint goes; refuses what would lose or invalidate something already written."""
    if not checkpoint.is_dir() or not (checkpoint / "config.json").is_file():
        raise ValueError(f"{checkpoint} is not a checkpoint folder (no config.json): pass a local checkpoint folder.")
    if output_dir is None or Path(output_dir).resolve() == checkpoint.resolve():
        if (checkpoint / CERTIFICATE_NAME).is_file():
            raise ValueError(
                f"{checkpoint} holds a certificate, which tuning in place would invalidate (config.json or the weights "
                "change): pass --output-dir NEW_FOLDER to write a tuned copy, then certify that."
            )
        check_writable_folder(checkpoint, option="CHECKPOINT")
        return checkpoint
    output = Path(output_dir)
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise OutputLocationError(f"--output-dir {output} exists and is not an empty folder: choose a new folder.")
    check_writable_folder(output, option="--output-dir")
    return output


def tune_checkpoint(
    checkpoint: str | os.PathLike,
    spec: dict[str, Any],
    options: ThresholdOptions | None = None,
    *,
    progress: bool = True,
) -> dict[str, Any]:
    """Tune the thresholds of ``checkpoint`` on the split ``spec`` names (:func:`hf_dft_head.audit.dataset_spec`,
    normally ``split="validation"``), write the tuned checkpoint and return its record (``thresholds.json``).

    Per label (default): ``config.json`` gets ``logit_thresholds``. ``keep_guarantee``: the head's input bias
    changes instead (module docstring). ``options.output_dir``: a copy of the checkpoint's bound files without its
    certificate and figure; default: in place (refused when the checkpoint holds a certificate). Raises
    ``ValueError`` for bad input (a test split, no such split, a dense head with ``keep_guarantee``...) before
    anything is written.
    """
    options = options or ThresholdOptions()
    checkpoint = Path(checkpoint)
    split_name = spec.get("split", "validation")
    if split_name in REFUSED_SPLITS:
        raise ValueError(
            f"Thresholds are tuned on a validation split, never on split={split_name!r}: test numbers measured on the "
            "data the thresholds were fitted to would say nothing."
        )
    output = _output_folder(checkpoint, options.output_dir)
    model, tokenizer = load_checkpoint(checkpoint, assume_multi_label=options.assume_multi_label)
    if options.keep_guarantee:
        input_bias(model)  # a head without one fails before the logits are computed
    labels = model_label_names(model.config, int(model.config.num_labels))
    try:
        split = audit.load_audit_split(spec, labels)
    except ValueError as error:
        if f"split={split_name!r}" not in str(error):
            raise
        raise ValueError(
            f"{error} tune-thresholds needs a validation split: give --data-files validation=PATH, or let it be "
            "carved from train (--validation-fraction > 0 with the training run's --seed)."
        ) from None
    logits = np.concatenate(
        list(
            audit.logit_batches(
                model,
                tokenizer,
                split.texts,
                batch_size=options.batch_size,
                max_length=options.max_length,
                progress=progress,
            )
        )
    ).astype(np.float64)
    targets = multi_hot_from_label_ids([list(s) for s in split.label_sets], len(labels)).astype(bool)
    tuned = tune_thresholds(
        logits, targets, options.metric, fallback=options.fallback, min_positives=options.min_positives
    )
    before = decision_thresholds(model.config)[0]
    record: dict[str, Any] = {
        "made_by": f"hf-dft tune-thresholds (hf-dft-head {__version__})",
        "checkpoint": str(checkpoint.resolve()),
        "metric": options.metric,
        "mode": "keep_guarantee" if options.keep_guarantee else "per_label",
        "data": split.describe(),
        "min_positives": options.min_positives,
        "fallback": {
            "policy": options.fallback,
            "threshold": tuned.fallback_threshold,
            "labels": [labels[i] for i in tuned.fallback_labels],
        },
        "validation": {
            "before": _split_metrics(logits, targets, before),
            "per_label": _split_metrics(logits, targets, tuned.thresholds),
        },
        "tuned_logit_thresholds": tuned.thresholds.tolist(),
        "dinkelbach_rounds": tuned.rounds,
    }
    if options.keep_guarantee:
        bias = input_bias(model)
        weight = find_sigmoid_head(model, assume_multi_label=options.assume_multi_label).weight
        shift, offset = column_space_shift(weight, tuned.thresholds, logits, targets, options.metric)
        realised = weight @ shift
        with torch.no_grad():
            bias -= torch.as_tensor(shift, dtype=bias.dtype, device=bias.device)
        model.config.logit_thresholds = None
        record["validation"]["projected"] = _split_metrics(logits, targets, realised)
        record["projection"] = {
            "input_bias_shift": shift.tolist(),
            "uniform_offset": offset,
            "residual_rms": float(np.sqrt(np.mean((realised - tuned.thresholds) ** 2))),
            "note": "the head's input bias moved by -input_bias_shift: its logits are z - W a, with W the head's "
            "last matrix; the validation figures are computed from the validation logits in float64",
        }
    else:
        model.config.logit_thresholds = tuned.thresholds.tolist()
    _write_checkpoint(checkpoint, output, model, record, weights=options.keep_guarantee)
    record["output_dir"] = str(output)
    return record


def _write_checkpoint(checkpoint: Path, output: Path, model, record: dict[str, Any], *, weights: bool) -> None:
    """Write the tuned files (config.json, the weights when they changed, ``thresholds.json``) into ``output``.

    Everything is written into a staging folder next to ``output`` first; a copy gets the checkpoint's other bound
    files (not its figure, which belongs to its certificate), and is renamed into place whole. In place, each
    changed file replaces the old one with ``os.replace``.
    """
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.tuning-", dir=output.parent))
    try:
        fresh = staging / "fresh"
        (model.save_pretrained if weights else model.config.save_pretrained)(fresh)
        changed = ["config.json"]
        if weights:
            written = sorted(p.name for p in fresh.iterdir() if p.name.endswith(_WEIGHT_SUFFIXES))
            present = sorted(p.name for p in checkpoint.iterdir() if p.name.endswith(_WEIGHT_SUFFIXES))
            if written != present:
                raise ValueError(
                    f"{checkpoint} stores its weights as {present}, and save_pretrained writes {written}: re-save the "
                    "checkpoint with save_pretrained first, so that the tuned weights replace the old ones."
                )
            changed += written + [p.name for p in fresh.iterdir() if p.name.endswith(".index.json")]
        write_json(record, fresh / THRESHOLDS_RECORD)
        changed.append(THRESHOLDS_RECORD)
        if output == checkpoint:
            for name in changed:
                os.replace(fresh / name, output / name)
            return
        copy = staging / "copy"
        for name in bound_files(checkpoint).files:
            if name in changed or name == AUDIT_FIGURE_NAME:
                continue
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(checkpoint / name, copy / name)
        copy.mkdir(exist_ok=True)
        for name in changed:
            os.replace(fresh / name, copy / name)
        if output.exists():
            output.rmdir()  # checked empty before any work
        os.replace(copy, output)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _data_name(spec: dict[str, Any]) -> str:
    return str(spec.get("dataset") or ", ".join(spec.get("data_files") or []) or NAMED_DATASETS[0])


def format_record(record: dict[str, Any]) -> str:
    """A few lines: the validation metrics before and after, the fallback labels, where the checkpoint is."""
    validation = record["validation"]
    lines = [
        f"Tuned {record['metric']} thresholds on {_data_name(record['data'])} split={record['data']['split']} "
        f"({record['data']['examples']} examples)"
    ]
    for name, metrics in validation.items():
        lines.append(f"  {name:<10} micro-F1 {metrics['micro_f1']:.4f}  macro-F1 {metrics['macro_f1']:.4f}")
    fallback = record["fallback"]
    if fallback["labels"]:
        shown = ", ".join(fallback["labels"][:5]) + (", ..." if len(fallback["labels"]) > 5 else "")
        lines.append(
            f"  {len(fallback['labels'])} labels with fewer than {record['min_positives']} positives kept the "
            f"{fallback['policy']} threshold {fallback['threshold']:.4g}: {shown}"
        )
    if record["mode"] == "keep_guarantee":
        lines.append(
            f"  thresholds folded into the head's input bias (residual rms {record['projection']['residual_rms']:.3g}"
            "); config.json has no logit_thresholds: the head's guarantee is unchanged"
        )
    else:
        lines.append(
            "  per-label logit_thresholds written to config.json (applied by model.predict, the package's pipeline and "
            "hf-dft predict/evaluate/audit); certify again: the audit now decides every set by LP"
        )
    lines.append(f"Checkpoint: {record['output_dir']}")
    return "\n".join(lines)


__all__ = [
    "FALLBACKS",
    "METRICS",
    "THRESHOLDS_RECORD",
    "ThresholdOptions",
    "TunedThresholds",
    "best_uniform_threshold",
    "column_space_shift",
    "format_record",
    "input_bias",
    "project_thresholds",
    "tune_checkpoint",
    "tune_thresholds",
    "uniform_direction",
]
