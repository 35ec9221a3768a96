"""Summaries of verdicts over a data set: shares, size buckets and radius quantiles (flat dicts of numbers)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

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
