"""Label-set sizes per split, to choose k (the DFT head guarantees every label set of at most k labels)."""

from __future__ import annotations

from typing import Any

import datasets
import numpy as np

from .formats import LABELS_COLUMN
from .loading import MultiLabelData


def _split_statistics(table: datasets.Dataset, k: int, label_column: str) -> dict[str, Any]:
    label_sets = table[label_column][:]
    sizes = np.fromiter((len(s) for s in label_sets), dtype=np.int64, count=len(label_sets))  # (examples,)
    histogram = np.bincount(sizes) if len(sizes) else np.zeros(1, dtype=np.int64)
    distinct = {tuple(sorted(s)) for s in label_sets}
    n = len(sizes)
    return {
        "examples": n,
        "mean_labels": float(sizes.mean()) if n else 0.0,
        "max_labels": int(sizes.max()) if n else 0,
        "empty": int((sizes == 0).sum()),
        "over_k": int((sizes > k).sum()),
        "share_over_k": float((sizes > k).mean()) if n else 0.0,
        "size_histogram": {size: int(count) for size, count in enumerate(histogram) if count},
        "distinct_label_sets": len(distinct),
        "distinct_label_sets_over_k": sum(1 for s in distinct if len(s) > k),
    }


def label_set_statistics(
    dataset: MultiLabelData | datasets.DatasetDict | datasets.Dataset, k: int, *, label_column: str = LABELS_COLUMN
) -> dict[str, Any]:
    """Label-set sizes per split, to choose k (the DFT head guarantees every label set of at most k labels).

    ``label_column`` holds label-id (or name) lists. Returns, for a Dataset, one dict (for a DatasetDict /
    MultiLabelData, ``{split: dict}``) with ``examples``, ``mean_labels``, ``max_labels``, ``empty`` (examples with no
    label), ``over_k`` and ``share_over_k`` (examples with more than k labels), ``size_histogram``
    (``{set size: examples}``), ``distinct_label_sets`` and ``distinct_label_sets_over_k``.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
        raise ValueError(f"k must be an int >= 0, got {k!r}.")
    if isinstance(dataset, MultiLabelData):
        dataset = dataset.dataset
    tables = dataset if isinstance(dataset, datasets.DatasetDict) else {"": dataset}
    for name, table in tables.items():
        if label_column not in table.column_names:
            raise ValueError(
                f"label_column={label_column!r} is not a column of {name or 'the dataset'}; the "
                f"columns are {table.column_names}."
            )
    stats = {name: _split_statistics(table, int(k), label_column) for name, table in tables.items()}
    return stats[""] if "" in stats else stats
