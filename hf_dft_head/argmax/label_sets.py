"""Label sets in a flat CSR layout: validation, normalisation and de-duplication.

A batch of label sets is stored as two integer arrays, like the rows of a CSR matrix:
``indptr`` (num_sets + 1,) and ``indices`` (total number of labels,), set ``i`` being
``indices[indptr[i]:indptr[i + 1]]`` sorted ascending. This layout lets the sign-change
rule run over millions of sets without a Python loop per set.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LabelSets:
    """A validated batch of label sets over ``num_labels`` labels.

    Attributes:
        indptr: int64 array of shape ``(num_sets + 1,)``; ``indptr[0] == 0``.
        indices: int64 array of shape ``(indptr[-1],)``; label ids, sorted ascending and
            distinct inside each set, all in ``[0, num_labels)``.
        num_labels: ``n``, the number of labels of the head.
    """

    indptr: np.ndarray
    indices: np.ndarray
    num_labels: int

    def __len__(self) -> int:
        return len(self.indptr) - 1

    @property
    def sizes(self) -> np.ndarray:
        """Set sizes, int64 array of shape ``(num_sets,)``."""
        return np.diff(self.indptr)

    def __getitem__(self, i: int) -> np.ndarray:
        """Labels of set ``i``: a sorted int64 array."""
        return self.indices[self.indptr[i] : self.indptr[i + 1]]

    def to_lists(self) -> list[list[int]]:
        """The sets as Python lists of ints (for JSON)."""
        return [self[i].tolist() for i in range(len(self))]

    def signs(self, i: int) -> np.ndarray:
        """Sign vector of set ``i``: float64 array of shape ``(num_labels,)``, +1 on the set, -1 off it."""
        return signs_from_labels(self[i], self.num_labels)


def signs_from_labels(labels: Sequence[int] | np.ndarray, num_labels: int) -> np.ndarray:
    """Sign pattern of one label set: float64 ``(num_labels,)`` with +1 on ``labels`` and -1 elsewhere."""
    signs = -np.ones(num_labels, dtype=np.float64)
    signs[np.asarray(labels, dtype=np.int64)] = 1.0
    return signs


def from_csr(indptr: np.ndarray, indices: np.ndarray, num_labels: int, *, check: bool = True) -> LabelSets:
    """Build :class:`LabelSets` from CSR arrays, sorting every set and validating ids.

    Args:
        indptr: ``(num_sets + 1,)`` non-decreasing integer offsets starting at 0.
        indices: ``(indptr[-1],)`` integer label ids.
        num_labels: ``n``.
        check: validate ranges and duplicates (the vectorised checks cost one sort).

    Raises:
        ValueError: an id out of ``[0, num_labels)`` or repeated inside a set, naming the set and the id.
    """
    indptr = np.asarray(indptr, dtype=np.int64)
    indices = np.asarray(indices, dtype=np.int64)
    if indptr.ndim != 1 or len(indptr) == 0 or indptr[0] != 0 or np.any(np.diff(indptr) < 0):
        raise ValueError("indptr must be a non-decreasing 1-D integer array starting at 0.")
    if indices.ndim != 1 or len(indices) != indptr[-1]:
        raise ValueError(f"indices must be 1-D with indptr[-1] = {indptr[-1]} entries, got shape {indices.shape}.")
    owner = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
    if check and len(indices):
        bad = np.flatnonzero((indices < 0) | (indices >= num_labels))
        if len(bad):
            j = bad[0]
            raise ValueError(
                f"label set {owner[j]} contains label id {indices[j]}, outside [0, {num_labels}): "
                f"ids must index the rows of the head's weight."
            )
    # Sort inside each set: the composite key keeps sets apart because ids < num_labels.
    key = owner * np.int64(num_labels) + indices
    order = np.argsort(key, kind="stable")
    indices = indices[order]
    if check and len(indices) > 1:
        same = np.flatnonzero((indices[1:] == indices[:-1]) & (owner[1:] == owner[:-1]))
        if len(same):
            j = same[0]
            raise ValueError(
                f"label set {owner[j]} contains label id {indices[j]} more than once: give each label at most once."
            )
    return LabelSets(indptr, indices, int(num_labels))


def from_id_lists(label_sets: Iterable[Sequence[int]], num_labels: int) -> LabelSets:
    """Validate label sets given as lists of label ids (empty lists allowed: the all-negative pattern).

    Raises:
        ValueError: a non-integer, out-of-range or repeated id, naming the set index and the id.
    """
    lists = [np.asarray(s) for s in label_sets]
    sizes = np.array([s.size for s in lists], dtype=np.int64)
    for i, s in enumerate(lists):
        if s.ndim > 1:
            raise ValueError(f"label set {i} has shape {s.shape}: give each set as a flat list of label ids.")
        if s.size and not (np.issubdtype(s.dtype, np.integer) or np.all(np.mod(s, 1) == 0)):
            raise ValueError(f"label set {i} contains non-integer ids {s.tolist()}: give label ids as integers.")
    indptr = np.zeros(len(lists) + 1, dtype=np.int64)
    np.cumsum(sizes, out=indptr[1:])
    indices = np.concatenate([s.ravel().astype(np.int64) for s in lists]) if len(lists) else np.zeros(0, np.int64)
    return from_csr(indptr, indices.astype(np.int64), num_labels)


def from_multi_hot(rows: np.ndarray | Sequence[Sequence[float]], num_labels: int) -> LabelSets:
    """Validate label sets given as multi-hot rows of shape ``(num_sets, num_labels)`` with 0/1 entries.

    Raises:
        ValueError: wrong width, or an entry other than 0/1 (naming the row).
    """
    matrix = np.asarray(rows)
    if matrix.ndim != 2 or (matrix.size and matrix.shape[1] != num_labels):
        raise ValueError(
            f"multi-hot label sets must have shape (num_sets, {num_labels}), got {matrix.shape}: "
            f"one column per label of the head."
        )
    matrix = matrix.reshape(-1, num_labels)
    bad = ~((matrix == 0) | (matrix == 1))
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise ValueError(f"multi-hot row {i} has value {matrix[i, j].item()!r} in column {j}: entries must be 0 or 1.")
    set_ids, label_ids = np.nonzero(matrix)
    indptr = np.zeros(matrix.shape[0] + 1, dtype=np.int64)
    np.cumsum(np.bincount(set_ids, minlength=matrix.shape[0]), out=indptr[1:])
    return LabelSets(indptr, label_ids.astype(np.int64), int(num_labels))


def as_label_sets(label_sets, num_labels: int, *, multi_hot: bool = False) -> LabelSets:
    """Normalise label sets given in any supported form.

    Args:
        label_sets: a :class:`LabelSets`; a sequence of label-id lists (default); or, with
            ``multi_hot=True``, an array-like of 0/1 rows of shape ``(num_sets, num_labels)``.
            Tensors are converted with ``np.asarray``.
        num_labels: ``n``, the number of rows of the head's weight.
        multi_hot: interpret ``label_sets`` as multi-hot rows. It has to be said explicitly: a
            2-D array of ids and a multi-hot matrix can look the same.

    Returns:
        :class:`LabelSets` with sorted, distinct, in-range ids.
    """
    if isinstance(label_sets, LabelSets):
        if label_sets.num_labels != num_labels:
            raise ValueError(f"label_sets were built for {label_sets.num_labels} labels, the head has {num_labels}.")
        return label_sets
    if multi_hot:
        return from_multi_hot(np.asarray(label_sets), num_labels)
    if isinstance(label_sets, np.ndarray) and label_sets.ndim == 2:
        return from_id_lists(list(label_sets), num_labels)
    return from_id_lists(list(label_sets), num_labels)
