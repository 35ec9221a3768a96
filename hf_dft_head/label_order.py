"""Where each label sits on the DFT layer's circle: a cyclic label order computed from train label sets.

The pure DFT layer can output a label set iff its 0/1 indicator, read around the circle, changes sign at most
``2k`` times (:mod:`hf_dft_head.argmax.rule`). With labels in vocabulary (name) order a real label set is
scattered around the circle; if labels that occur together sit next to each other, a set is a few contiguous
arcs, so it has few sign changes and is outputtable even when it has more than ``k`` labels.

Convention (the same as :mod:`hf_dft_head.argmax.rule`): an order is given as ``positions``, an int64 array of
shape ``(n,)`` and a permutation of ``0..n-1``, ``positions[label_id]`` being the label's position on the circle;
row ``i`` of the head's effective matrix is ``G[positions[i]]``. A *tour* is the inverse: ``tour[p]`` is the label
at position ``p``.

The main method (``"cooccurrence"``) rests on an exact identity. The cyclic sign changes of a set ``S`` are the
tour edges with exactly one end in ``S``; summed over the train sets that is
``sum over tour edges (u, v) of f_u + f_v - 2 C_uv`` with ``f`` the label frequencies and ``C`` the co-occurrence
counts. Every label has two tour edges, so the ``f`` part is the same for every tour: **minimising the total
number of sign changes is a travelling-salesman problem, maximising the co-occurrence counts along the tour**.
It is solved heuristically on the sparse co-occurrence graph: greedy-edge construction, 2-opt and Or-opt moves
over each label's heaviest neighbours, then an iterated local search (local double-bridge kicks). The order does
not depend on ``k``: aiming at the share of sets within ``2k`` changes instead (re-weighting the sets near the
threshold, or hill-climbing on that share directly) gained under one point on the disaster-response train sets
and nothing reliable on its validation and test sets. Cost: one sparse product ``A^T A``
(``sum |S|^2`` pairs) and work about linear in the number of labels; no ``n x n`` dense matrix is ever built.

Only numpy and scipy are used here.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Mapping, Sequence
from itertools import permutations

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import eigsh

from .argmax.label_sets import LabelSets, as_label_sets
from .argmax.rule import circle_positions, count_sign_changes
from .gale import check_label_order

METHODS = ("cooccurrence", "frequency", "name", "spectral")
WEIGHTINGS = ("count", "cosine")

#: Largest number of label pairs (``sum |S| (|S| - 1)`` over the train sets) the co-occurrence product may
#: produce before :func:`cooccurrence_matrix` refuses (the sparse product then needs about 3 GB).
MAX_PAIRS = 200_000_000

# Up to this many labels in the tour, every tour is tried (7! = 5,040 permutations with the first label fixed).
_EXHAUSTIVE_MAX = 8
# Or-opt segments of 1..3 nodes that start (forward) or end (backward) at the node ``a`` being examined, at
# position i: their length, direction, and offsets from i of their first position, members (padded by repeating
# one), other end, and the nodes just before and after them. _RING: the positions i-3 .. i+3 these refer to.
_SEG_LENGTH = np.array([1, 2, 2, 3, 3])
_SEG_FORWARD = np.array([True, True, False, True, False])
_SEG_FIRST = np.array([0, 0, -1, 0, -2])
_SEG_MEMBERS = np.array([[0, 0, 0], [0, 1, 1], [-1, 0, 0], [0, 1, 2], [-2, -1, 0]])
_SEG_OTHER = np.array([0, 1, -1, 2, -2])
_SEG_BEFORE = _SEG_FIRST - 1
_SEG_AFTER = _SEG_FIRST + _SEG_LENGTH
_RING = np.arange(-3, 4)


# ----------------------------------------------------------------------------------------------------------------
# Statistics of an order
# ----------------------------------------------------------------------------------------------------------------


def _sets_and_positions(label_sets, positions, num_labels: int | None) -> tuple[LabelSets, np.ndarray]:
    """Validate ``positions`` (n,) and the sets against it; ``num_labels`` defaults to ``len(positions)``."""
    positions = np.asarray(positions)
    if num_labels is None:
        num_labels = positions.shape[0] if positions.ndim == 1 else -1
    positions = check_label_order(positions, num_labels)
    return as_label_sets(label_sets, num_labels), positions


def sign_change_counts(label_sets, positions, num_labels: int | None = None) -> np.ndarray:
    """Cyclic sign changes of every set's 0/1 indicator read around the circle in ``positions`` order.

    Args:
        label_sets: a :class:`~hf_dft_head.argmax.LabelSets` (e.g. from ``from_csr(indptr, indices, n)``) or
            a sequence of label-id lists (empty lists allowed).
        positions: ``(n,)`` permutation, ``positions[label_id]`` = circle position.
        num_labels: ``n``; defaults to ``len(positions)`` (checked against it when given).

    Returns:
        int64 array of shape ``(num_sets,)``: even counts, 0 for the empty and the full set. A set is
        outputtable by the pure DFT layer ``G(n, k)`` iff its count is at most ``2k`` (the linear count used by
        :func:`hf_dft_head.argmax.rule_argmaxable` is this count or one less, which gives the same verdict).
    """
    sets, positions = _sets_and_positions(label_sets, positions, num_labels)
    linear = count_sign_changes(sets.indptr, circle_positions(sets, positions), sets.num_labels)
    # Closing the circle adds one change exactly when the line count is odd (the set holds one end, not both).
    return linear + (linear & 1)


def guarantee_share(label_sets, positions, k: int, num_labels: int | None = None) -> float:
    """Share of the sets with at most ``2k`` cyclic sign changes under ``positions`` (NaN for no sets).

    These are the sets the pure DFT layer with parameter ``k`` can output; give one set per example to get
    the share of examples. Arguments as in :func:`sign_change_counts`.
    """
    _check_k(k)
    counts = sign_change_counts(label_sets, positions, num_labels)
    return float(np.mean(counts <= 2 * k)) if len(counts) else float("nan")


def order_statistics(
    splits: Mapping[str, object], positions, ks: Sequence[int], num_labels: int | None = None
) -> dict[str, dict[str, float]]:
    """Per split: share of sets within the guarantee for each ``k``, and mean / max sign changes.

    Args:
        splits: ``{split name: label sets}`` (each as in :func:`sign_change_counts`), e.g. train / validation.
        positions: ``(n,)`` circle positions.
        ks: values of ``k`` to report (those with ``2k + 1 > n`` are reported too: every set fits).

    Returns:
        ``{split: {"sets": count, "mean_sign_changes": ..., "max_sign_changes": ..., "share_k<k>": ...}}``.
    """
    out = {}
    for name, label_sets in splits.items():
        counts = sign_change_counts(label_sets, positions, num_labels)
        nan = float("nan")
        row = {
            "sets": float(len(counts)),
            "mean_sign_changes": float(counts.mean()) if len(counts) else nan,
            "max_sign_changes": float(counts.max()) if len(counts) else nan,
        }
        for k in ks:
            _check_k(k)
            row[f"share_k{k}"] = float(np.mean(counts <= 2 * k)) if len(counts) else nan
        out[name] = row
    return out


def _check_int(name: str, value, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}.")


def _check_k(k) -> None:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
        raise ValueError(f"k must be an int >= 0 (the DFT layer has 2k + 1 columns), got {k!r}.")


# ----------------------------------------------------------------------------------------------------------------
# Co-occurrence and similarity graphs
# ----------------------------------------------------------------------------------------------------------------


def incidence_matrix(sets: LabelSets, set_weights: np.ndarray | None = None) -> sp.csr_matrix:
    """Sets x labels incidence matrix ``A`` (CSR, float64), row ``i`` holding ``set_weights[i]`` (default 1)."""
    data = np.ones(len(sets.indices)) if set_weights is None else np.repeat(set_weights, sets.sizes)
    return sp.csr_matrix((data, sets.indices, sets.indptr), shape=(len(sets), sets.num_labels))


def cooccurrence_matrix(sets: LabelSets, set_weights: np.ndarray | None = None) -> sp.csr_matrix:
    """Label co-occurrence ``C = A^T diag(w) A`` with a zero diagonal (CSR float64, ``(n, n)``, sorted indices).

    ``C[u, v]`` is the (weighted) number of sets holding both ``u`` and ``v``. The product costs
    ``sum |S| (|S| - 1)`` pairs; more than :data:`MAX_PAIRS` raises ``ValueError`` naming the largest sets.
    """
    sizes = sets.sizes
    pairs = int(np.sum(sizes * (sizes - 1)))
    if pairs > MAX_PAIRS:
        largest = np.sort(sizes)[-5:][::-1].tolist()
        raise ValueError(
            f"the train label sets make {pairs:,} label pairs (sum of |S|(|S|-1)), over the limit of {MAX_PAIRS:,}; "
            f"the largest sets have {largest} labels. Drop or split the largest sets before computing the order."
        )
    a = incidence_matrix(sets, set_weights)
    c = (a.T @ a).tocsr()
    c.setdiag(0)
    c.eliminate_zeros()
    c.sort_indices()
    return c


def name_similarity(label_names: Sequence[str], *, max_labels_per_token: int = 50) -> sp.csr_matrix:
    """Cosine similarity of the labels' name tokens (CSR float64 ``(n, n)``, zero diagonal, values in (0, 1]).

    Names are split on anything that is not a letter or digit and lower-cased (``"aid_related"`` ->
    ``{"aid", "related"}``). A token shared by more than ``max_labels_per_token`` labels (``"other"``,
    ``"related"`` in a large vocabulary) links too much to mean anything and would make the product dense, so
    it is ignored; the rest are weighted by inverse document frequency.
    """
    vocabulary: dict[str, int] = {}
    rows, cols = [], []
    for label, name in enumerate(label_names):
        for token in sorted(set(re.split(r"[^0-9a-z]+", str(name).lower())) - {""}):
            rows.append(label)
            cols.append(vocabulary.setdefault(token, len(vocabulary)))
    n = len(label_names)
    t = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, max(len(vocabulary), 1)))
    labels_per_token = np.asarray(t.sum(axis=0)).ravel()
    keep = (labels_per_token >= 2) & (labels_per_token <= max_labels_per_token)
    idf = np.where(keep, np.log((1 + n) / (1 + labels_per_token)) + 1, 0.0)
    t = (t @ sp.diags(idf)).tocsr()
    norms = np.sqrt(np.asarray(t.multiply(t).sum(axis=1)).ravel())
    t = (sp.diags(np.divide(1.0, norms, out=np.zeros(n), where=norms > 0)) @ t).tocsr()
    s = (t @ t.T).tocsr()
    s.setdiag(0)
    s.eliminate_zeros()
    s.sort_indices()
    return s


# ----------------------------------------------------------------------------------------------------------------
# The travelling-salesman heuristic on a sparse weight graph (maximise the weight along the tour)
# ----------------------------------------------------------------------------------------------------------------


class _PairWeights:
    """Vectorised look-up of ``W[u, v]`` in a sparse symmetric matrix (0 where absent), by binary search."""

    def __init__(self, w: sp.csr_matrix):
        w = w.tocsr()
        w.sort_indices()
        self.n = np.int64(w.shape[0])
        rows = np.repeat(np.arange(w.shape[0], dtype=np.int64), np.diff(w.indptr))
        # Row-major keys of a CSR matrix with sorted indices are already in ascending order.
        self.keys = rows * self.n + w.indices.astype(np.int64)
        self.values = w.data.astype(np.float64)

    def __call__(self, u, v):
        """``W[u, v]`` for equally shaped integer arrays (or scalars) ``u``, ``v``."""
        if not len(self.keys):
            return np.zeros(np.shape(u))
        query = np.asarray(u, dtype=np.int64) * self.n + np.asarray(v, dtype=np.int64)
        at = np.minimum(np.searchsorted(self.keys, query), len(self.keys) - 1)
        return np.where(self.keys[at] == query, self.values[at], 0.0)


def _neighbour_lists(w: sp.csr_matrix, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each node's ``count`` heaviest neighbours in ``w`` (ties by id), as CSR ``(indptr, ids, weights)``."""
    n = w.shape[0]
    rows = np.repeat(np.arange(n, dtype=np.int64), np.diff(w.indptr))
    order = np.lexsort((w.indices, -w.data, rows))
    rank = np.arange(len(order)) - w.indptr[rows[order]]
    chosen = order[rank < count]
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.minimum(np.diff(w.indptr), count), out=indptr[1:])
    return indptr, w.indices[chosen].astype(np.int64), w.data[chosen].astype(np.float64)


def _greedy_tour(w: sp.csr_matrix, nbr_ptr: np.ndarray, nbr_ids: np.ndarray) -> np.ndarray:
    """Greedy-edge construction: take edges heaviest first while every node keeps degree <= 2 and no cycle closes.

    Candidates are the neighbour-list edges, then every remaining positive edge between path ends; the
    resulting paths (a node with no usable edge is a path of one) are joined in order of their smallest node id.

    Returns:
        ``(m,)`` int64 tour of the ``m`` nodes.
    """
    m = w.shape[0]
    parent = list(range(m))
    degree = [0] * m
    links: list[list[int]] = [[] for _ in range(m)]

    def root(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def take(us: np.ndarray, vs: np.ndarray, ws: np.ndarray) -> None:
        order = np.lexsort((vs, us, -ws))  # heaviest first; ties by (u, v) for determinism
        for u, v in zip(us[order].tolist(), vs[order].tolist()):
            if degree[u] < 2 and degree[v] < 2:
                ru, rv = root(u), root(v)
                if ru != rv:
                    parent[ru] = rv
                    degree[u] += 1
                    degree[v] += 1
                    links[u].append(v)
                    links[v].append(u)

    owners = np.repeat(np.arange(m, dtype=np.int64), np.diff(nbr_ptr))
    upper = owners < nbr_ids
    lower = ~upper
    us = np.concatenate([owners[upper], nbr_ids[lower]])
    vs = np.concatenate([nbr_ids[upper], owners[lower]])
    unique = np.unique(us * m + vs)
    take(unique // m, unique % m, _PairWeights(w)(unique // m, unique % m))
    # Second pass: any positive edge left between two path ends (outside the neighbour lists).
    coo = sp.triu(w, k=1).tocoo()
    deg = np.asarray(degree)
    usable = (deg[coo.row] < 2) & (deg[coo.col] < 2)
    take(coo.row[usable].astype(np.int64), coo.col[usable].astype(np.int64), coo.data[usable])
    # Walk the paths from their ends; join them in order of their smallest node.
    seen = np.zeros(m, dtype=bool)
    paths = []
    for start in range(m):
        if seen[start] or degree[start] == 2:
            continue
        path, previous, node = [], -1, start
        while True:
            path.append(node)
            seen[node] = True
            nxt = [x for x in links[node] if x != previous]
            if not nxt:
                break
            previous, node = node, nxt[0]
        paths.append(path)
    if not seen.all():  # greedy never closes a cycle, so every node lies on a path
        raise AssertionError("greedy tour construction left nodes outside every path")
    paths.sort(key=min)
    return np.asarray([node for path in paths for node in path], dtype=np.int64)


class _TourSearch:
    """2-opt and Or-opt local search maximising ``sum W[tour[p], tour[p + 1]]`` around the circle.

    State: ``tour`` (m,), ``pos`` (m,) its inverse, and ``edge`` (m,) with ``edge[p] = W[tour[p], tour[p + 1]]``.
    Moves for a node ``a`` pair it with each ``b`` in its neighbour list: the two 2-opt moves creating the edge
    ``(a, b)``, and relocating a segment of 1..3 nodes starting or ending at ``a`` next to ``b`` (either side,
    ``a`` facing ``b``). The best improving move is applied; nodes whose edges changed are queued again
    (don't-look bits). Reversals take the shorter side of the circle.
    """

    def __init__(self, w: sp.csr_matrix, tour: np.ndarray, nbr_ptr, nbr_ids, nbr_w):
        self.lookup = _PairWeights(w)
        self.m = len(tour)
        self.tour = np.asarray(tour, dtype=np.int64).copy()
        self.pos = np.empty(self.m, dtype=np.int64)
        self.pos[self.tour] = np.arange(self.m)
        self.edge = self.lookup(self.tour, np.roll(self.tour, -1))
        self.nbr_ptr, self.nbr_ids, self.nbr_w = nbr_ptr, nbr_ids, nbr_w
        largest = float(np.max(np.abs(w.data))) if w.nnz else 1.0
        self.tolerance = 1e-9 * largest
        self.moves = 0

    def weight(self) -> float:
        return float(self.edge.sum())

    # -- applying moves ------------------------------------------------------------------------------------------

    def _write(self, start: int, labels: np.ndarray, edges: np.ndarray, before: float) -> None:
        """Put ``labels`` at positions ``start..`` (cyclic) with their outgoing edge weights; ``before`` is the
        weight of the edge entering the block."""
        idx = (start + np.arange(len(labels))) % self.m
        self.tour[idx] = labels
        self.pos[labels] = idx
        self.edge[idx] = edges
        self.edge[(start - 1) % self.m] = before

    def _reverse(self, i: int, j: int) -> None:
        """Reverse the cyclic block of positions ``i..j``, or its complement when that is shorter."""
        m = self.m
        length = (j - i) % m + 1
        if 2 * length > m:
            i, j, length = (j + 1) % m, (i - 1) % m, m - length
        if length < 2:
            return
        idx = (i + np.arange(length)) % m
        labels = self.tour[idx][::-1]
        inner = self.edge[idx[:-1]][::-1]
        outside_before, outside_after = self.tour[(i - 1) % m], self.tour[(j + 1) % m]
        before, after = self.lookup(np.array([outside_before, labels[-1]]), np.array([labels[0], outside_after]))
        self._write(i, labels, np.append(inner, after), before)

    def _move_segment(self, lo: int, length: int, x: int, reverse: bool) -> None:
        """Move the segment at positions ``lo..lo+length-1`` between node ``x`` and its successor, reversed or not.

        Shifts whichever of the two arcs between the segment's old and new place is shorter.
        """
        m, tour, edge = self.m, self.tour, self.edge
        hi = (lo + length - 1) % m
        seg_idx = (lo + np.arange(length)) % m
        segment = tour[seg_idx]
        seg_edges = edge[seg_idx[:-1]]
        if reverse:
            segment, seg_edges = segment[::-1], seg_edges[::-1]
        p, s = tour[(lo - 1) % m], tour[(hi + 1) % m]
        y = tour[(self.pos[x] + 1) % m]
        ends = self.lookup(np.array([x, segment[-1], p]), np.array([segment[0], y, s]))
        into, out_of, closing = ends
        d = (self.pos[x] - hi) % m  # nodes from s to x, going forward
        rest = m - length - d  # nodes from y to p
        if d <= rest:
            arc_idx = (hi + 1 + np.arange(d)) % m  # s .. x moves back by `length`
            labels = np.concatenate([tour[arc_idx], segment])
            edges = np.concatenate([edge[arc_idx[:-1]], [into], seg_edges, [out_of]])
            self._write(lo, labels, edges, closing)
        else:
            arc_idx = (hi + d + 1 + np.arange(rest)) % m  # y .. p moves forward by `length`
            labels = np.concatenate([segment, tour[arc_idx]])
            edges = np.concatenate([seg_edges, [out_of], edge[arc_idx[:-1]], [closing]])
            self._write((hi + d + 1) % m, labels, edges, into)

    # -- searching -----------------------------------------------------------------------------------------------

    def _best_move(self, a: int):
        """The best improving move around node ``a`` as ``(gain, kind, args, touched nodes)``, or ``None``.

        All candidate moves are scored at once: a ``(12, K)`` gain table over the ``K`` neighbours ``b`` of ``a``
        (rows: the two 2-opt moves, then the five segments inserted after ``b``, then before ``b``).
        """
        lo, hi = self.nbr_ptr[a], self.nbr_ptr[a + 1]
        if lo == hi:
            return None
        m, tour, edge = self.m, self.tour, self.edge
        b, wab = self.nbr_ids[lo:hi], self.nbr_w[lo:hi]
        count = len(b)
        i = int(self.pos[a])
        j = self.pos[b]
        pb, sb = tour[j - 1], tour[(j + 1) % m]
        ring = tour[(i + _RING) % m]  # the nodes at positions i-3 .. i+3
        ring_edges = edge[(i + _RING[:-1]) % m]  # edges leaving positions i-3 .. i+2
        pa, sa = ring[2], ring[4]
        other, before, after = ring[3 + _SEG_OTHER], ring[3 + _SEG_BEFORE], ring[3 + _SEG_AFTER]
        segments = len(_SEG_LENGTH)
        rows = np.empty((2 + 2 * segments, count), dtype=np.int64)
        cols = np.empty_like(rows)
        rows[0], cols[0] = sa, sb
        rows[1], cols[1] = pa, pb
        rows[2 : 2 + segments], cols[2 : 2 + segments] = other[:, None], sb
        rows[2 + segments :], cols[2 + segments :] = pb, other[:, None]
        found = self.lookup(np.concatenate([rows.ravel(), before]), np.concatenate([cols.ravel(), after]))
        table = found[: rows.size].reshape(rows.shape)
        # Removing a segment replaces its two outer edges by the edge joining its neighbours.
        removal = found[rows.size :] - ring_edges[3 + _SEG_BEFORE] - ring_edges[2 + _SEG_AFTER]
        gains = table + wab
        gains[0] -= edge[i] + edge[j]
        gains[1] -= edge[i - 1] + edge[j - 1]
        gains[2 : 2 + segments] += removal[:, None] - edge[j]
        gains[2 + segments :] += removal[:, None] - edge[j - 1]
        inside = (b == ring[3 + _SEG_MEMBERS][:, :, None]).any(axis=1)
        degenerate = (b == pa) | (b == sa)
        gains[:2, degenerate] = -np.inf
        gains[2 : 2 + segments][inside | (b == before[:, None])] = -np.inf
        gains[2 + segments :][inside | (b == after[:, None])] = -np.inf
        best = int(np.argmax(gains))
        kind, c = divmod(best, count)
        gain = float(gains.flat[best])
        if not gain > self.tolerance:
            return None
        bb, jj = int(b[c]), int(j[c])
        if kind == 0:  # a sa ... b sb -> a b ... sa sb
            return gain, "reverse", ((i + 1) % m, jj), (a, int(sa), bb, int(sb[c]))
        if kind == 1:  # pa a ... pb b -> pa pb ... a b
            return gain, "reverse", (i, (jj - 1) % m), (a, int(pa), bb, int(pb[c]))
        side, t = divmod(kind - 2, segments)
        first, length, forward = (i + _SEG_FIRST[t]) % m, int(_SEG_LENGTH[t]), bool(_SEG_FORWARD[t])
        touched = (a, int(other[t]), int(before[t]), int(after[t]), bb)
        if side == 0:  # after b, a facing b
            return gain, "move", (first, length, bb, not forward), touched + (int(sb[c]),)
        return gain, "move", (first, length, int(pb[c]), forward), touched + (int(pb[c]),)

    def run(self, order: np.ndarray) -> None:
        """Improve until no node in the queue (seeded with ``order``) has an improving move."""
        queue = deque(int(x) for x in order)
        queued = np.zeros(self.m, dtype=bool)
        queued[order] = True
        while queue:
            a = queue.popleft()
            queued[a] = False
            move = self._best_move(a)
            if move is None:
                continue
            _, kind, args, touched = move
            if kind == "reverse":
                self._reverse(*args)
            else:
                self._move_segment(*args)
            self.moves += 1
            for node in touched:
                if not queued[node]:
                    queued[node] = True
                    queue.append(node)

    def kick(self, rng: np.random.Generator, window: int) -> tuple[int, ...]:
        """Double-bridge perturbation inside a window: swap two adjacent random segments ``B C -> C B``.

        Returns the six nodes whose edges changed (to queue for the local search).
        """
        m = self.m
        lengths = rng.integers(1, max(2, min(window, m // 3)), size=2)
        start = int(rng.integers(m))
        first = (start + np.arange(lengths[0])) % m
        second = (start + lengths[0] + np.arange(lengths[1])) % m
        b, c = self.tour[first], self.tour[second]
        before, after = self.tour[(start - 1) % m], self.tour[(second[-1] + 1) % m]
        into, middle, out_of = self.lookup(np.array([before, c[-1], b[-1]]), np.array([c[0], b[0], after]))
        edges = np.concatenate([self.edge[second[:-1]], [middle], self.edge[first[:-1]], [out_of]])
        self._write(start, np.concatenate([c, b]), edges, into)
        return int(before), int(b[0]), int(b[-1]), int(c[0]), int(c[-1]), int(after)

    def state(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.tour.copy(), self.pos.copy(), self.edge.copy()

    def restore(self, state) -> None:
        self.tour, self.pos, self.edge = (array.copy() for array in state)


def _exhaustive_tour(w: sp.csr_matrix) -> np.ndarray:
    """The best tour of ``m <= 8`` nodes by trying every cyclic order (node 0 first)."""
    m = w.shape[0]
    dense = w.toarray()
    best, best_tour = -np.inf, np.arange(m)
    for rest in permutations(range(1, m)):
        tour = np.array((0, *rest))
        value = dense[tour, np.roll(tour, -1)].sum()
        if value > best + 1e-12:
            best, best_tour = value, tour
    return best_tour


def optimise_tour(
    w: sp.csr_matrix,
    *,
    seed: int = 0,
    neighbours: int = 16,
    start: np.ndarray | None = None,
    kicks: int = 200,
    kick_window: int = 50,
) -> np.ndarray:
    """A tour (cyclic order) of the ``m`` nodes of the symmetric non-negative weight graph ``w`` with heavy edges.

    Args:
        w: ``(m, m)`` sparse symmetric matrix, zero diagonal; the tour maximises the sum of ``w`` over its edges.
        seed: seeds the order in which nodes are first examined and the kicks.
        neighbours: candidate partners per node (its heaviest edges).
        start: ``(m,)`` tour (a permutation) to improve instead of the greedy construction.
        kicks: iterated local search rounds after the first local optimum: a random swap of two adjacent
            segments of up to ``kick_window`` nodes, local search around it, kept unless the weight dropped.
        kick_window: longest segment a kick moves.

    Returns:
        ``(m,)`` int64 tour. Up to 8 nodes, the optimum by enumeration.
    """
    w = sp.csr_matrix(w)
    w.sort_indices()
    m = w.shape[0]
    if m <= 3:
        return np.arange(m, dtype=np.int64)
    if m <= _EXHAUSTIVE_MAX:
        return _exhaustive_tour(w)
    nbr_ptr, nbr_ids, nbr_w = _neighbour_lists(w, neighbours)
    tour = _greedy_tour(w, nbr_ptr, nbr_ids) if start is None else check_label_order(start, m)
    search = _TourSearch(w, tour, nbr_ptr, nbr_ids, nbr_w)
    rng = np.random.default_rng(seed)
    search.run(rng.permutation(m))
    # Iterated local search: perturb locally, re-optimise around the perturbation, keep it unless it got worse.
    best_weight, best = search.weight(), search.state()
    for _ in range(kicks):
        touched = search.kick(rng, kick_window)
        search.run(np.asarray(touched))
        weight = search.weight()
        if weight >= best_weight - search.tolerance:
            best_weight, best = max(weight, best_weight), search.state()
        else:
            search.restore(best)
    return best[0]


# ----------------------------------------------------------------------------------------------------------------
# Orders
# ----------------------------------------------------------------------------------------------------------------


def positions_from_tour(tour: np.ndarray) -> np.ndarray:
    """Inverse of a tour: ``(n,)`` int64 ``positions`` with ``positions[tour[p]] = p``."""
    tour = np.asarray(tour, dtype=np.int64)
    positions = np.empty(len(tour), dtype=np.int64)
    positions[tour] = np.arange(len(tour))
    return positions


def _frequency_tour(frequency: np.ndarray) -> np.ndarray:
    """Labels by descending train frequency, ties (and never-seen labels, at the end) by id."""
    return np.lexsort((np.arange(len(frequency)), -frequency)).astype(np.int64)


def _spectral_tour(w: sp.csr_matrix) -> np.ndarray:
    """Angle of each node in the plane of the first two non-trivial eigenvectors of the normalised graph.

    Nodes without edges go last, by id. A baseline: it sees only the global layout, not local adjacency.
    """
    degree = np.asarray(w.sum(axis=1)).ravel()
    linked = np.flatnonzero(degree > 0)
    if len(linked) <= 3:
        return np.concatenate([linked, np.flatnonzero(degree == 0)]).astype(np.int64)
    sub = w[linked][:, linked]
    scale = sp.diags(1 / np.sqrt(degree[linked]))
    normalised = scale @ sub @ scale
    if len(linked) <= 200:
        values, vectors = np.linalg.eigh(normalised.toarray())
    else:
        # A fixed generic start vector keeps the result deterministic (ARPACK would draw a random one).
        start = np.random.default_rng(0).uniform(0.5, 1.5, len(linked))
        values, vectors = eigsh(normalised, k=3, which="LA", v0=start)
    top = vectors[:, np.argsort(values)[-3:]]  # ascending: the third and second largest, then the trivial one
    coordinates = scale @ top[:, :2]
    angle = np.arctan2(coordinates[:, 1], coordinates[:, 0])
    return np.concatenate([linked[np.lexsort((linked, angle))], np.flatnonzero(degree == 0)]).astype(np.int64)


def label_order(
    label_sets,
    num_labels: int,
    method: str = "cooccurrence",
    *,
    seed: int = 0,
    weighting: str = "count",
    similarity: sp.spmatrix | sp.sparray | None = None,
    similarity_weight: float = 0.5,
    neighbours: int = 16,
    kicks: int = 200,
) -> np.ndarray:
    """Circle position of every label, computed from the train split's label sets.

    Args:
        label_sets: train label sets: a :class:`~hf_dft_head.argmax.LabelSets` (``from_csr(indptr, indices, n)``)
            or a sequence of label-id lists. Repeats count (one set per example).
        num_labels: ``n``.
        method:
            * ``"cooccurrence"`` (default): labels that occur together sit together. A tour through the
              co-occurrence graph maximising the co-occurrence along the circle, which minimises the total number
              of sign changes of the train sets (module docstring).
            * ``"frequency"``: descending train frequency (the most frequent labels form one arc), ties by id.
            * ``"name"``: the identity (vocabulary order, which the loaders sort by name).
            * ``"spectral"``: angle in the plane of the graph's first two non-trivial eigenvectors (a cheaper,
              weaker baseline).
        seed: seeds the local search (node order, perturbations); the result is a deterministic function of the
            inputs and the seed.
        weighting: ``"count"`` (co-occurrence counts: the exact sign-change objective) or ``"cosine"``
            (``C_uv / sqrt(f_u f_v)``: a rare label's edges weigh as much as a frequent one's).
        similarity: optional ``(n, n)`` sparse non-negative label similarity (e.g. :func:`name_similarity`, or
            the top neighbours of label centroids in feature space), added to the graph times
            ``similarity_weight`` (for ``"count"``: a similarity of 1 is worth that many co-occurrences). It
            places labels with little or no co-occurrence evidence, including labels absent from train.
        neighbours: candidate partners per label in the local search (its heaviest edges).
        kicks: perturbations of the iterated local search after the first local optimum (0: none).

    Returns:
        ``positions``, int64 ``(n,)``, a permutation: ``positions[label_id]`` is the label's circle position
        (row ``i`` of the head's effective matrix is ``G[positions[i]]``). The circle is cut at its edge shared by
        the fewest train sets (position 0 follows it); labels without any edge in the graph (never in train, or
        only alone, and no similarity) take the last positions in id order.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}.")
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}.")
    if isinstance(num_labels, bool) or not isinstance(num_labels, (int, np.integer)) or num_labels < 1:
        raise ValueError(f"num_labels must be a positive int, got {num_labels!r}.")
    _check_int("neighbours", neighbours, 1)
    _check_int("kicks", kicks, 0)
    _check_int("seed", seed, 0)
    if similarity is not None and method not in ("cooccurrence", "spectral"):
        raise ValueError(f"similarity is used by the 'cooccurrence' and 'spectral' methods, not by {method!r}.")
    if (
        isinstance(similarity_weight, bool)
        or not isinstance(similarity_weight, (int, float, np.number))
        or not (np.isfinite(similarity_weight) and similarity_weight >= 0)
    ):
        raise ValueError(f"similarity_weight must be a finite number >= 0, got {similarity_weight!r}.")
    n = int(num_labels)
    if method == "name":
        return np.arange(n, dtype=np.int64)
    sets = as_label_sets(label_sets, n)
    if method == "frequency":
        return positions_from_tour(_frequency_tour(np.bincount(sets.indices, minlength=n)))
    graph = _label_graph(sets, weighting)
    if similarity is not None:
        graph = (graph + similarity_weight * _check_similarity(similarity, n)).tocsr()
        graph.sort_indices()
    if method == "spectral":
        return positions_from_tour(_spectral_tour(graph))
    linked = np.flatnonzero(np.diff(graph.indptr) > 0)
    tour = linked[optimise_tour(graph[linked][:, linked], seed=seed, neighbours=neighbours, kicks=kicks)]
    return positions_from_tour(_cut_and_append(sets, graph, tour, np.flatnonzero(np.diff(graph.indptr) == 0)))


def _check_similarity(similarity, n: int) -> sp.csr_matrix:
    """A user similarity as a symmetric CSR matrix with zero diagonal; ValueError on a wrong shape or sign."""
    if not sp.issparse(similarity):
        raise ValueError(
            f"similarity must be a scipy.sparse matrix of shape ({n}, {n}), got {type(similarity).__name__}: "
            "keep only each label's strongest neighbours (a dense n x n matrix does not scale)."
        )
    if similarity.shape != (n, n):
        raise ValueError(f"similarity must have shape ({n}, {n}) (one row per label), got {similarity.shape}.")
    s = sp.csr_matrix(similarity, dtype=np.float64)
    if s.nnz and (not np.all(np.isfinite(s.data)) or s.data.min() < 0):
        raise ValueError("similarity must hold finite non-negative values (0 = unrelated).")
    s = ((s + s.T) / 2).tocsr()
    s.setdiag(0)
    s.eliminate_zeros()
    return s


def _label_graph(sets: LabelSets, weighting: str) -> sp.csr_matrix:
    """The ``(n, n)`` co-occurrence graph the tour maximises, counts or cosine-normalised."""
    graph = cooccurrence_matrix(sets)
    if weighting == "cosine":
        frequency = np.bincount(sets.indices, minlength=sets.num_labels).astype(np.float64)
        inverse = sp.diags(np.divide(1.0, np.sqrt(frequency), out=np.zeros_like(frequency), where=frequency > 0))
        graph = (inverse @ graph @ inverse).tocsr()
        graph.sort_indices()
    return graph


def _cut_and_append(sets: LabelSets, graph: sp.csr_matrix, tour: np.ndarray, rest: np.ndarray) -> np.ndarray:
    """Rotate ``tour`` to start after its edge shared by the fewest train sets, then append ``rest``.

    The appended labels share no train set with a tour label, so closing the circle through them adds two sign
    changes to exactly the sets holding both ends of the cut edge. Ties go to the lightest edge of ``graph``
    (e.g. a similarity edge is kept), then to the first.
    """
    if len(tour) >= 2:
        a = incidence_matrix(sets).tocsc()
        following = np.roll(tour, -1)
        shared = np.asarray(a[:, tour].multiply(a[:, following]).sum(axis=0)).ravel()
        weight = _PairWeights(graph)(tour, following)
        cut = int(np.lexsort((np.arange(len(tour)), weight, shared))[0])
        tour = np.roll(tour, -(cut + 1))
    return np.concatenate([tour, rest]).astype(np.int64)
