"""The sign-change rule of the DFT output layer, its certificates, and exact counting helpers.

For the pure DFT layer ``z = G(n, k) x`` (Grivas, Vergari & Lopez, AAAI 2024) a label set is argmaxable iff
its 0/1 indicator, read in circle order (label ``i`` sits at position ``label_order[i]``),
has at most ``2k`` sign changes between consecutive positions. The theorem is about the exact
(real) ``G``; it says nothing about a rounded copy of ``G`` (float32 rounding moves rows by ~1e-9,
enough to close regions of that size), which is why :func:`.verify.prepare_head` applies the rule only
to the float64 ``gale_matrix`` bit for bit. Everything here is exact integer work over label sets
stored as CSR arrays (see :mod:`.label_sets`), vectorised over all sets at once.

The "no" answer can be backed by a Farkas certificate without any LP: the trigonometric
polynomials of degree ``k`` form a Haar (Chebyshev) system of dimension ``2k + 1`` on the
circle, so the unique linear dependency between ``2k + 2`` rows of ``G`` taken in circle
order alternates in sign. Taking one label from each of ``2k + 2`` consecutive runs of the
indicator (alternately in and out of the set) makes ``y_i = sigma_i v_i`` non-negative,
which is exactly the certificate checked by :func:`.lp.check_farkas_certificate`; the engine then
proves it in exact arithmetic over the float64 ``G`` (:func:`.exact.prove_farkas`).
"""

from __future__ import annotations

from math import comb

import numpy as np

from ..gale import dft_width, gale_matrix
from .label_sets import LabelSets


def circle_positions(sets: LabelSets, label_order: np.ndarray | None = None) -> np.ndarray:
    """Positions on the circle of every label of every set, sorted inside each set.

    Args:
        sets: the batch, in CSR form.
        label_order: ``(n,)`` permutation, or ``None`` for the identity (then the sorted ids are the positions).

    Returns:
        int64 array aligned with ``sets.indices``: per set, the sorted circle positions.
    """
    if label_order is None:
        return sets.indices
    positions = label_order[sets.indices]
    owner = np.repeat(np.arange(len(sets), dtype=np.int64), sets.sizes)
    # One flat sort of (set, position) keys sorts inside every set at once.
    key = owner * np.int64(sets.num_labels) + positions
    key.sort()
    return key - owner * np.int64(sets.num_labels)


def labels_by_position(label_order: np.ndarray) -> np.ndarray:
    """The inverse permutation of ``label_order``: entry ``p`` is the label at circle position ``p``, ``(n,)`` int64.

    O(n) (8 ms at n = 1M): a caller that maps positions to labels for many sets computes it once.
    """
    inverse = np.empty(len(label_order), dtype=np.int64)
    inverse[label_order] = np.arange(len(label_order))
    return inverse


def count_sign_changes(indptr: np.ndarray, positions: np.ndarray, num_labels: int) -> np.ndarray:
    """Sign changes of each set's indicator along the line of positions ``0..n-1`` (not cyclic).

    A set with ``R`` maximal runs of consecutive positions has ``2R`` boundaries, minus one
    when it contains position 0 and minus one when it contains position ``n - 1``.

    Args:
        indptr: ``(num_sets + 1,)`` CSR offsets.
        positions: sorted circle positions inside each set (see :func:`circle_positions`).
        num_labels: ``n``.

    Returns:
        int64 array of shape ``(num_sets,)``.
    """
    indptr = np.asarray(indptr, dtype=np.int64)
    sizes = np.diff(indptr)
    nonempty = sizes > 0
    starts = indptr[:-1][nonempty]
    ends = indptr[1:][nonempty] - 1
    # gap[j] = 1 when entries j and j+1 are not adjacent positions: a new run starts at j+1.
    # Pairs that straddle two sets are counted too, but only differences of the cumulative
    # sum inside one set are used below, so they never leak into a set's count.
    gap = np.empty(len(positions), dtype=np.int64)
    gap[0:1] = 0
    if len(positions) > 1:
        gap[1:] = positions[1:] != positions[:-1] + 1
    cumulative = np.cumsum(gap)
    runs = 1 + cumulative[ends] - cumulative[starts]
    changes = np.zeros(len(sizes), dtype=np.int64)
    changes[nonempty] = 2 * runs - (positions[starts] == 0) - (positions[ends] == num_labels - 1)
    return changes


def rule_argmaxable(sets: LabelSets, k: int, label_order: np.ndarray | None = None) -> np.ndarray:
    """The exact DFT rule, vectorised: is each set argmaxable under ``G(n, k)``?

    Args:
        sets: ``num_sets`` label sets over ``n`` labels.
        k: the DFT layer's sparsity parameter (``2k + 1`` columns).
        label_order: ``(n,)`` circle position of each label (identity when ``None``).

    Returns:
        bool array of shape ``(num_sets,)``: at most ``2k`` sign changes in circle order.
        (For odd ``2k + 1`` the linear and the cyclic counts give the same answer: the cyclic
        count is even and exceeds the linear one by at most one.)
    """
    positions = circle_positions(sets, label_order)
    return count_sign_changes(sets.indptr, positions, sets.num_labels) <= 2 * k


def _runs(positions: np.ndarray, num_labels: int) -> list[tuple[int, int]]:
    """Maximal cyclic runs ``(first, last)`` of a sorted position list; a run may wrap past ``n - 1``."""
    if len(positions) == 0:
        return []
    breaks = np.flatnonzero(np.diff(positions) != 1)
    firsts = np.r_[positions[0], positions[breaks + 1]]
    lasts = np.r_[positions[breaks], positions[-1]]
    runs = [(int(a), int(b)) for a, b in zip(firsts, lasts)]
    if len(runs) > 1 and runs[0][0] == 0 and runs[-1][1] == num_labels - 1:
        runs = [(runs[-1][0], runs[0][1])] + runs[1:-1]
    return runs


def dft_rule_certificate(
    labels: np.ndarray,
    num_labels: int,
    k: int,
    label_order: np.ndarray | None = None,
    *,
    weight: np.ndarray | None = None,
    attempt: int = 0,
    position_labels: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray] | None:
    """A Farkas certificate for a set that the rule rejects, from ``2k + 2`` rows of ``G`` (no LP).

    Args:
        labels: sorted label ids of the set.
        num_labels: ``n``.
        k: DFT sparsity parameter.
        label_order: ``(n,)`` circle positions, identity when ``None``.
        weight: optional ``(n, >= 2k+1)`` head matrix whose first ``2k + 1`` columns are
            ``G[label_order]``; the dependency is computed from its rows (so it certifies the
            head as stored). Default: :func:`hf_dft_head.gale.gale_matrix`.
        attempt: which choice of rows: the ``k + 1`` runs of the set are picked evenly spread over its runs,
            starting ``attempt`` runs further on (another attempt, other rows, when one fails the exact proof).
        position_labels: ``labels_by_position(label_order)`` when the caller has it (else computed here, O(n)).

    Returns:
        ``(rows, y)``: label ids (2k+2,) and weights ``y > 0`` summing to 1 with
        ``sum_i y_i sigma_i G_i = 0`` (so also ``sum_i y_i sigma_i = 0``, the first column
        being constant), or ``None`` when the set has at most ``2k`` sign changes or the
        computed dependency does not alternate in floating point, or ``attempt`` is not below the
        number of runs (the caller then uses the LP).
    """
    labels = np.asarray(labels, dtype=np.int64)
    positions = np.sort(labels if label_order is None else label_order[labels])
    runs = _runs(positions, num_labels)
    if len(positions) == num_labels or len(runs) < k + 1 or attempt >= len(runs):
        return None
    # 2k+2 points alternately in and out of the set, in circle order: the middle of k+1 runs of the set, spread
    # evenly over its R runs, and the middle of the longest gap between consecutive chosen runs. Any alternating
    # choice gives an alternating dependency; spreading the points keeps the (2k+2, 2k+1) system well conditioned
    # when n is large (points close together, e.g. a label and its neighbour, give rows of G within 2 pi / n of each
    # other and dependency weights that the float64 rounding of G can flip).
    count = len(runs)
    picks = [attempt + (i * count) // (k + 1) for i in range(k + 1)]  # distinct, as count >= k + 1

    def middle(first: int, last: int) -> int:
        return (first + ((last - first) % num_labels) // 2) % num_labels

    gaps = [((last + 1) % num_labels, (runs[(j + 1) % count][0] - 1) % num_labels) for j, (_, last) in enumerate(runs)]
    points = []
    for a, b in zip(picks, picks[1:] + [picks[0] + count]):
        points.append((middle(*runs[a % count]), 1.0))
        widest = max(range(a, b), key=lambda j: (gaps[j % count][1] - gaps[j % count][0]) % num_labels)
        points.append((middle(*gaps[widest % count]), -1.0))
    points.sort()
    pos = np.array([p for p, _ in points], dtype=np.int64)
    sigma = np.array([s for _, s in points])
    if position_labels is None and label_order is not None:
        position_labels = labels_by_position(label_order)
    rows = pos if position_labels is None else position_labels[pos]
    width = dft_width(k)
    g = gale_matrix(num_labels, k)[pos] if weight is None else np.asarray(weight, dtype=np.float64)[rows, :width]
    _, _, vt = np.linalg.svd(g.T)
    dependency = vt[-1]  # g.T @ dependency == 0 up to rounding (g.T is (2k+1, 2k+2))
    y = dependency * sigma
    y *= np.sign(y.sum())
    if np.any(y <= 0):
        return None
    return rows, y / y.sum()


def count_sign_patterns(num_labels: int, dim: int, *, bias: bool) -> int:
    """Exact number of argmaxable sign patterns of ``n`` hyperplanes in general position in ``R^dim``.

    * ``bias=False`` (central hyperplanes ``w_i . x = 0``): Cover's count
      ``C(n, d) = 2 * sum_{j < d} binom(n - 1, j)`` (Cover, 1965).
    * ``bias=True`` (affine hyperplanes ``w_i . x + b_i = 0`` with generic ``b``): the regions of
      an affine arrangement, ``sum_{j <= d} binom(n, j)``; equal to ``C(n + 1, d + 1) / 2`` (the
      homogenised arrangement cut by ``t > 0``).

    Args:
        num_labels: ``n >= 0``.
        dim: ``d >= 0``, the dimension of the head's input space.
        bias: whether the head has a generic bias.

    Returns:
        A Python int (exact); never more than ``2**n``.
    """
    if num_labels < 0 or dim < 0:
        raise ValueError(f"num_labels and dim must be >= 0, got {num_labels}, {dim}.")
    if bias:
        return sum(comb(num_labels, j) for j in range(min(dim, num_labels) + 1))
    if num_labels == 0:
        return 1
    return 2 * sum(comb(num_labels - 1, j) for j in range(min(dim, num_labels)))


def count_dft_argmaxable(num_labels: int, k: int) -> int:
    """Exact number of label sets argmaxable under the pure DFT layer ``G(n, k)``: ``2 * sum_{i<=k} binom(n, 2i)``.

    Equals :func:`count_sign_patterns` ``(n, 2k + 1, bias=False)`` (Pascal's rule), and is the
    number of 0/1 strings of length ``n`` with at most ``2k`` sign changes.
    """
    if num_labels < 1 or k < 0:
        raise ValueError(f"need num_labels >= 1 and k >= 0, got {num_labels}, {k}.")
    return 2 * sum(comb(num_labels, 2 * i) for i in range(k + 1))


def count_label_sets_up_to(num_labels: int, max_size: int) -> int:
    """Exact number of label sets with at most ``max_size`` labels out of ``n``: ``sum_{j<=max_size} binom(n, j)``."""
    if num_labels < 0 or max_size < 0:
        raise ValueError(f"need num_labels >= 0 and max_size >= 0, got {num_labels}, {max_size}.")
    return sum(comb(num_labels, j) for j in range(min(max_size, num_labels) + 1))
