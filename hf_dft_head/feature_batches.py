"""A split's cached encoder features held in memory as tensors and served a whole batch at a time.

Head-only training (``--freeze-encoder``) reads the same few megabytes of features every epoch. Read through a
``datasets`` table and a per-example collator, a batch of 128 costs 128 row reads, 128 Python dicts and a stack,
which is several times the cost of the head's own step. :class:`InMemoryFeatures` keeps the split as one float32
tensor ``(N, d)``, its labels as sparse id lists (a flat id tensor and row offsets, so memory grows with the number
of positive labels, not with ``N x n``), and turns a list of row indices into a batch with a few tensor operations.

It is a map-style ``torch.utils.data.Dataset``: wrapped in a ``DataLoader`` and prepared by Accelerate it
keeps Accelerate's seeded sampler, its sharding over processes (even batches included), ``skip_first_batches`` for
resuming and the end-of-data bookkeeping that ``gather_for_metrics`` relies on; only the per-example work is gone.
The loader fetches through ``__getitems__`` (one call per batch) and :func:`whole_batch` passes the result on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from torch.utils.data import Dataset


def _list_column(table: pa.Table, name: str) -> tuple[np.ndarray, np.ndarray]:
    """A list column of ``N`` rows as ``(flat values (P,), row lengths (N,))``, both new arrays in memory.

    Chunk by chunk (``flatten`` takes each chunk's slicing into account): joining the chunks first would hold a
    second copy of the whole column at the peak.
    """
    column = table.column(name)
    if column.null_count:
        raise ValueError(f"column {name!r} has {column.null_count} missing rows; every row needs a list.")
    chunks = column.chunks
    if not chunks:
        return np.zeros(0, dtype=np.float64), np.zeros(0, dtype=np.int64)
    values = np.concatenate([chunk.flatten().to_numpy(zero_copy_only=False) for chunk in chunks])
    lengths = np.concatenate([pc.list_value_length(chunk).to_numpy(zero_copy_only=False) for chunk in chunks])
    return values, lengths


class InMemoryFeatures(Dataset):
    """Features ``(N, d)`` float32, multi-hot labels ``(N, n)`` built per batch from id lists, example ids ``(N,)``.

    ``dataset.__getitems__(rows)`` with ``B`` row numbers gives the batch the per-example collator gave:
    ``{features_key: (B, d) float32, "labels": (B, n) float32 multi-hot, index_key: (B,) int64}`` (CPU tensors;
    Accelerate's loader moves them to the device). The arrays are numpy, not torch: on batches this small, a numpy
    call costs about a microsecond where a torch call costs several, and a batch takes about a dozen.
    """

    def __init__(
        self,
        features: np.ndarray,
        label_ids: np.ndarray,
        label_offsets: np.ndarray,
        example_index: np.ndarray,
        num_labels: int,
        *,
        features_key: str,
        index_key: str,
        labels_key: str = "labels",
    ) -> None:
        """``features`` ``(N, d)`` float32; ``label_ids`` ``(P,)``, the rows' label ids one after another;
        ``label_offsets`` ``(N + 1,)``, row ``i``'s ids are ``label_ids[offsets[i]:offsets[i + 1]]``;
        ``example_index`` ``(N,)``."""
        rows = features.shape[0]
        if label_offsets.shape != (rows + 1,) or example_index.shape != (rows,):
            raise ValueError(
                f"InMemoryFeatures: {rows} feature rows need {rows + 1} label offsets and {rows} example ids, got "
                f"{label_offsets.shape} and {example_index.shape}."
            )
        if label_ids.size and (int(label_ids.min()) < 0 or int(label_ids.max()) >= num_labels):
            raise ValueError(
                f"InMemoryFeatures: label ids must lie in [0, {num_labels}) (the vocabulary size), got ids from "
                f"{int(label_ids.min())} to {int(label_ids.max())}."
            )
        self.features = np.ascontiguousarray(features, dtype=np.float32)
        self.label_ids = np.asarray(label_ids, dtype=np.int64)
        self.label_offsets = np.asarray(label_offsets, dtype=np.int64)
        self.example_index = np.asarray(example_index, dtype=np.int64)
        self.num_labels = int(num_labels)
        self.features_key, self.index_key, self.labels_key = features_key, index_key, labels_key

    @classmethod
    def from_split(
        cls, split: datasets.Dataset, num_labels: int, *, features_key: str, labels_key: str, index_key: str
    ) -> InMemoryFeatures:
        """Read the columns ``features_key`` (equal-length float lists), ``labels_key`` (label-id lists) and
        ``index_key`` (ints) of a ``datasets`` split into arrays, once."""
        table = split.with_format("arrow")[:]  # the rows in the split's order (an index mapping applied)
        values, lengths = _list_column(table, features_key)
        rows = table.num_rows
        width = int(lengths[0]) if rows else 0
        if rows and not np.all(lengths == width):
            raise ValueError(f"column {features_key!r}: rows have different lengths ({lengths.min()}-{lengths.max()}).")
        ids, counts = _list_column(table, labels_key)
        offsets = np.zeros(rows + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        return cls(
            values.astype(np.float32, copy=False).reshape(rows, width),
            ids,
            offsets,
            table.column(index_key).to_numpy(zero_copy_only=False),
            num_labels,
            features_key=features_key,
            index_key=index_key,
            labels_key=labels_key,
        )

    def __len__(self) -> int:
        return self.features.shape[0]

    def __getitems__(self, rows: Sequence[int]) -> dict[str, torch.Tensor]:
        """``B`` row numbers -> the batch dict (see the class docstring)."""
        rows = np.asarray(rows, dtype=np.int64)
        starts = self.label_offsets[rows]
        lengths = self.label_offsets[rows + 1] - starts
        # Positive j of the batch belongs to batch row owner[j]; its id sits at label_ids[starts[owner] + rank],
        # where rank counts the row's earlier positives: j minus the slot of the row's first positive.
        owner = np.repeat(np.arange(rows.size), lengths)
        where = np.arange(owner.size) + np.repeat(starts - (np.cumsum(lengths) - lengths), lengths)
        labels = np.zeros((rows.size, self.num_labels), dtype=np.float32)
        labels[owner, self.label_ids[where]] = 1.0
        return {
            self.features_key: torch.from_numpy(self.features[rows]),
            self.labels_key: torch.from_numpy(labels),
            self.index_key: torch.from_numpy(self.example_index[rows]),
        }

    def __getitem__(self, row: int) -> dict[str, torch.Tensor]:
        """One example: ``(d,)``, ``(n,)``, ``()`` (loaders fetch whole batches through ``__getitems__``)."""
        return {key: value[0] for key, value in self.__getitems__([row]).items()}


def whole_batch(batch: dict[str, Any]) -> dict[str, Any]:
    """The ``collate_fn`` for :class:`InMemoryFeatures`: ``__getitems__`` already built the batch."""
    return batch
