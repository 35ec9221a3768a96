"""Summaries of verdicts over a data set: counts, shares, size buckets, radius quantiles and named examples.

One module for both readers of :class:`~.verify.Verdict` lists: :func:`summarize_verdicts` gives the flat dict of
numbers the ``argmaxability`` metric returns, :func:`summarise_audit_verdicts` the nested record of an audit report
(and of a certificate, which ``verify`` recomputes and compares: its keys and values must not change).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .verify import ARGMAXABLE, UNARGMAXABLE, UNDECIDED, Verdict

#: Quantiles of the relative radius reported by :func:`summarize_verdicts`.
RADIUS_QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def _block(verdicts: list[Verdict], occurrences: list[int], prefix: str) -> dict[str, float]:
    """Counts and shares over one group of distinct sets (``occurrences``: examples per set)."""
    total = len(verdicts)
    examples = sum(occurrences)
    status = [v.status for v in verdicts]
    nan = float("nan")
    return {
        f"{prefix}sets": total,
        f"{prefix}argmaxable": status.count(ARGMAXABLE) / total if total else nan,
        f"{prefix}epsilon_argmaxable": sum(v.epsilon_argmaxable is True for v in verdicts) / total if total else nan,
        f"{prefix}unargmaxable_sets": status.count(UNARGMAXABLE),
        f"{prefix}undecided_sets": status.count(UNDECIDED),
        f"{prefix}argmaxable_examples": (
            sum(c for v, c in zip(verdicts, occurrences) if v.status == ARGMAXABLE) / examples if examples else nan
        ),
    }


def summarize_verdicts(
    label_sets: Sequence[Sequence[int]],
    verdict_of: Mapping[tuple[int, ...], Verdict],
    *,
    k: int | None = None,
    prefix: str = "",
) -> dict[str, float]:
    """Summarise the verdicts of the (possibly repeated) label sets of a data set.

    Args:
        label_sets: one label set per example (repeats allowed; each distinct set counts once
            in the ``*sets`` shares and by its number of examples in ``*_examples``).
        verdict_of: verdict of every distinct set, keyed by its sorted label tuple.
        k: size threshold for the buckets ``size_le_k`` (at most ``k`` labels) and ``size_gt_k``;
            ``None`` gives one bucket per size, ``size_<s>``.
        prefix: prepended to every key (e.g. ``"references_"``).

    Returns:
        Flat dict: ``sets`` (distinct), ``argmaxable`` and ``epsilon_argmaxable`` (shares of
        distinct sets), ``unargmaxable_sets``, ``undecided_sets`` (counts), ``argmaxable_examples``
        (share of examples), the same per size bucket, and ``relative_radius_q05 .. q95`` over the
        argmaxable sets whose radius was computed (NaN when none).
    """
    occurrences = Counter(tuple(sorted(int(i) for i in s)) for s in label_sets)
    distinct = list(occurrences)
    verdicts = [verdict_of[s] for s in distinct]
    counts = [occurrences[s] for s in distinct]
    out = _block(verdicts, counts, prefix)
    sizes = np.array([len(s) for s in distinct], dtype=np.int64)
    if k is not None:
        buckets = {"size_le_k_": sizes <= k, "size_gt_k_": sizes > k}
    else:
        buckets = {f"size_{s}_": sizes == s for s in sorted(set(sizes.tolist()))}
    for name, mask in buckets.items():
        chosen = np.flatnonzero(mask)
        out.update(_block([verdicts[i] for i in chosen], [counts[i] for i in chosen], prefix + name))
    radii = np.array([v.relative_radius for v in verdicts if v.status == ARGMAXABLE and v.relative_radius is not None])
    for q in RADIUS_QUANTILES:
        out[f"{prefix}relative_radius_q{round(100 * q):02d}"] = float(np.quantile(radii, q)) if len(radii) else np.nan
    return out


def _radius_quantiles(verdicts: Sequence[Verdict]) -> dict[str, float] | None:
    """min / q05 / median / q95 / max of the finite radii of the argmaxable ``verdicts`` (``None`` when none)."""
    radii = [float(v.radius) for v in verdicts if v.status == ARGMAXABLE and v.radius is not None]
    finite = np.asarray([r for r in radii if math.isfinite(r)], dtype=np.float64)
    if finite.size == 0:
        return None
    q = np.quantile(finite, [0.0, 0.05, 0.5, 0.95, 1.0])
    return {"min": float(q[0]), "q05": float(q[1]), "median": float(q[2]), "q95": float(q[3]), "max": float(q[4])}


def _size_row(size: int, verdicts: Sequence[Verdict]) -> dict[str, Any]:
    """The audit's counts over the distinct sets of one size."""
    counts = Counter(v.status for v in verdicts)
    return {
        "size": size,
        "sets": len(verdicts),
        "argmaxable": counts[ARGMAXABLE],
        "unargmaxable": counts[UNARGMAXABLE],
        "undecided": counts[UNDECIDED],
        "argmaxable_share": counts[ARGMAXABLE] / len(verdicts),
        "epsilon_argmaxable": sum(1 for v in verdicts if v.status == ARGMAXABLE and v.epsilon_argmaxable),
        "radius_computed": sum(v.status == ARGMAXABLE and v.epsilon_argmaxable is not None for v in verdicts),
        "radius_quantiles": _radius_quantiles(verdicts),
    }


def summarise_audit_verdicts(
    verdicts: Sequence[Verdict],
    occurrences: Mapping[tuple[int, ...], int],
    *,
    label_names: Sequence[str],
    k: int | None,
    max_examples: int = 10,
) -> dict[str, Any]:
    """The audit report's record of distinct label sets: counts, shares, by-size rows, radius quantiles, and
    examples of never-output and undecided sets with their label names.

    ``verdicts``: one per distinct set (``labels`` the set), in the order the report lists them; ``occurrences``
    maps a set to how many examples carry it; ``label_names`` (n,) names label ids; ``k`` (the DFT head's
    guaranteed sparsity, or ``None``) sets the "> k" count. JSON-ready (Python numbers, lists, ``None``).
    """
    counts = Counter(v.status for v in verdicts)
    distinct = len(verdicts)
    argmaxable = [v for v in verdicts if v.status == ARGMAXABLE]
    has_radius = [v for v in argmaxable if v.epsilon_argmaxable is not None]
    epsilon_ok = sum(1 for v in has_radius if v.epsilon_argmaxable)
    by_size: dict[int, list[Verdict]] = {}
    for v in verdicts:
        by_size.setdefault(len(v.labels), []).append(v)
    never = sorted((v for v in verdicts if v.status == UNARGMAXABLE), key=lambda v: (-occurrences[v.labels], v.labels))
    undecided = [v for v in verdicts if v.status == UNDECIDED]
    larger = sum(1 for v in verdicts if k is not None and len(v.labels) > k)
    return {
        "distinct_sets": distinct,
        "examples": sum(occurrences[v.labels] for v in verdicts),
        "argmaxable": counts[ARGMAXABLE],
        "unargmaxable": counts[UNARGMAXABLE],
        "undecided": counts[UNDECIDED],
        "argmaxable_share": counts[ARGMAXABLE] / distinct if distinct else None,
        "radius_computed": len(has_radius),
        "epsilon_argmaxable": epsilon_ok,
        "epsilon_argmaxable_share": epsilon_ok / distinct if distinct and len(has_radius) == len(argmaxable) else None,
        "examples_with_unargmaxable_set": sum(occurrences[v.labels] for v in never),
        "sets_larger_than_k": larger if k is not None else None,
        "share_larger_than_k": larger / distinct if k is not None and distinct else None,
        "radius_quantiles": _radius_quantiles(verdicts),
        "by_size": [_size_row(size, by_size[size]) for size in sorted(by_size)],
        "unargmaxable_examples": [
            {
                "label_ids": list(v.labels),
                "labels": [label_names[i] for i in v.labels],
                "occurrences": occurrences[v.labels],
            }
            for v in never[:max_examples]
        ],
        "undecided_examples": [
            {"label_ids": list(v.labels), "labels": [label_names[i] for i in v.labels], "reason": v.reason or None}
            for v in undecided[:max_examples]
        ],
    }
