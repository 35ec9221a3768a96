"""Label formats and the label vocabulary: how a table's label column(s) become label names, and names become ids.

The formats (``label_format``, detected from the column's feature type when not given):

* ``"names"``: one column holding a list of label names (``["sports", "politics"]``);
* ``"ids"``: one column holding a list of integer label ids (or ``ClassLabel`` ids, whose names are used), or a
  single ``int`` / ``ClassLabel`` column (one label per example);
* ``"multi_hot"``: one column holding a fixed-length list of 0/1 (ints, floats or bools);
* ``"columns"``: many 0/1 columns, named by ``label_columns=[...]`` or selected by ``label_prefix="..."``;
* ``"delimited"``: one string column, split on ``label_separator`` (``"a;b;c"``); without a separator each string
  is one label.

Reading is two ``datasets.map`` steps (see :mod:`.loading`): :func:`labels_to_names` turns a batch in any format
into label-name lists, :func:`names_to_ids` turns those into sorted id lists of a :class:`LabelVocabulary`.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

logger = logging.getLogger(__name__)

TEXT_COLUMN = "text"
LABELS_COLUMN = "labels"
LABEL_FORMATS = ("names", "ids", "multi_hot", "columns", "delimited")

# Columns the map steps add and remove again; a user column may not start with "__".
LABEL_NAMES_COLUMN = "__label_names"
LABEL_NULL_COLUMN = "__label_null"
DROPPED_COLUMN = "__dropped"

SUPPORTED_LABEL_TYPES = (
    "a list of label names (List(Value('string'))), a list of label ids (List(Value('int*')) or "
    "List(ClassLabel)), a multi-hot list of 0/1 of fixed length (ints, floats or bools), a single string "
    "(one label, or several joined by label_separator), a single int or ClassLabel (one label id), or many 0/1 "
    "columns given by label_columns=[...] or label_prefix='...'"
)


# ----------------------------------------------------------------------------------------------------------------
# Label vocabulary
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LabelVocabulary:
    """The label set of a model: label id ``i`` is ``labels[i]``.

    ``id2label`` / ``label2id`` have the shapes transformers configs use (``config.id2label = vocab.id2label``).
    """

    labels: tuple[str, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "labels", tuple(self.labels))
        not_strings = [label for label in self.labels if not isinstance(label, str)]
        if not_strings:
            raise ValueError(f"LabelVocabulary: labels must be strings, got {not_strings[:5]!r}; convert them first.")
        if len(set(self.labels)) != len(self.labels):  # a set is 2x faster than a Counter at 1M labels
            duplicates = sorted(label for label, count in Counter(self.labels).items() if count > 1)
            raise ValueError(f"LabelVocabulary: duplicate labels {duplicates[:10]!r}; every label name must be unique.")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_labels(self) -> int:
        """n, the number of labels (the width of a multi-hot row)."""
        return len(self.labels)

    @property
    def id2label(self) -> dict[int, str]:
        """``{id: name}`` for ``config.id2label``."""
        return dict(enumerate(self.labels))

    @property
    def label2id(self) -> dict[str, int]:
        """``{name: id}`` for ``config.label2id``."""
        return {label: index for index, label in enumerate(self.labels)}

    def encode(self, names: Sequence[str]) -> list[int]:
        """Label names -> sorted, de-duplicated label ids. Raises ValueError on a name outside the vocabulary."""
        label2id = self.label2id
        unknown = [name for name in names if name not in label2id]
        if unknown:
            raise ValueError(f"LabelVocabulary.encode: unknown labels {unknown[:10]!r} (vocabulary has {len(self)}).")
        return sorted({label2id[name] for name in names})

    def decode(self, ids: Sequence[int]) -> list[str]:
        """Label ids -> label names, in the given order."""
        bad = [i for i in ids if not 0 <= int(i) < len(self.labels)]
        if bad:
            raise ValueError(f"LabelVocabulary.decode: ids {bad[:10]!r} are outside [0, {len(self.labels)}).")
        return [self.labels[int(i)] for i in ids]

    @classmethod
    def from_id2label(cls, id2label: Mapping[int | str, str]) -> LabelVocabulary:
        """Rebuild from a config's ``id2label`` (keys may be strings after a JSON round trip); ids must be 0..n-1."""
        by_id = {int(key): value for key, value in id2label.items()}
        if sorted(by_id) != list(range(len(by_id))):
            raise ValueError(f"id2label: ids must be exactly 0..{len(by_id) - 1}, got {sorted(by_id)[:10]!r}...")
        return cls(tuple(by_id[i] for i in range(len(by_id))))

    @classmethod
    def from_counts(
        cls,
        counts: Mapping[str, int],
        *,
        order: Literal["name", "frequency"] = "name",
        min_count: int = 1,
        numeric_names: bool = False,
    ) -> LabelVocabulary:
        """Vocabulary of the labels counted at least ``min_count`` times.

        ``order="name"`` sorts by name (numerically when ``numeric_names``, so "2" < "10"); ``order="frequency"``
        sorts by descending count, ties broken by name. Both are deterministic.
        """
        if order not in ("name", "frequency"):
            raise ValueError(f"vocabulary_order must be 'name' or 'frequency', got {order!r}.")
        kept = [label for label, count in counts.items() if count >= min_count]

        def name_key(label: str) -> Any:
            return (int(label), label) if numeric_names else label

        if order == "name":
            kept.sort(key=name_key if numeric_names else None)
        else:
            kept.sort(key=lambda label: (-counts[label], name_key(label)))
        return cls(tuple(kept))


# ----------------------------------------------------------------------------------------------------------------
# Which format a column is in
# ----------------------------------------------------------------------------------------------------------------


def int_kind(feature: Any) -> bool:
    """Whether ``feature`` is an integer ``datasets.Value`` (signed or unsigned)."""
    return isinstance(feature, datasets.Value) and (feature.dtype.startswith("int") or feature.dtype.startswith("uint"))


def inner_feature(feature: Any) -> Any | None:
    """The element feature of a list feature, else None."""
    if isinstance(feature, (datasets.List, datasets.LargeList)):
        return feature.feature
    if isinstance(feature, datasets.Sequence):  # older datasets releases
        return feature.feature
    if isinstance(feature, list) and len(feature) == 1:
        return feature[0]
    return None


def flat_label_values(table: datasets.Dataset, column: str) -> tuple[np.ndarray, set]:
    """Lengths of the non-null rows ``(rows,)`` int64 and the distinct element values of a list column (pyarrow, no
    Python row loop)."""
    chunked = table.with_format("arrow")[:][column]
    array = chunked.combine_chunks() if isinstance(chunked, pa.ChunkedArray) else chunked
    array = pc.drop_null(array)
    lengths = np.asarray(pc.list_value_length(array).to_numpy(zero_copy_only=False), dtype=np.int64)
    values = set(pc.unique(pc.list_flatten(array)).to_pylist())
    return lengths, values


def _detect_list_format(train: datasets.Dataset, label_column: str, inner: Any) -> str:
    """The format of a list column whose element feature is ``inner``."""
    if isinstance(inner, datasets.ClassLabel):
        return "ids"
    if isinstance(inner, datasets.Value):
        if inner.dtype in ("string", "large_string", "null"):  # "null": every list is empty
            return "names"
        if inner.dtype == "bool" or inner.dtype.startswith("float"):
            return "multi_hot"
        if int_kind(inner):
            lengths, values = flat_label_values(train, label_column)
            binary = values <= {0, 1, None}
            same_length = len(lengths) > 0 and int(lengths.min()) == int(lengths.max())
            if binary and same_length and int(lengths.max()) > 1:
                return "multi_hot"
            if binary and not same_length and 1 in values:
                raise ValueError(
                    f"label column {label_column!r} holds integer lists with only the values 0/1 but rows of "
                    f"different lengths ({int(lengths.min())} to {int(lengths.max())}). If it is a multi-hot "
                    "column, every row must have the same length; if these are label ids, pass "
                    "label_format='ids'."
                )
            return "ids"
    raise ValueError(
        f"label column {label_column!r} has the unsupported type {train.features[label_column]}; supported: "
        f"{SUPPORTED_LABEL_TYPES}."
    )


def _warn_if_looks_delimited(train: datasets.Dataset, label_column: str) -> None:
    """A string column read as one label per row, although its values look like ``"a;b"``: say so."""
    probe = [v for v in train.select(range(min(len(train), 1000)))[label_column] if isinstance(v, str)]
    suspicious = [v for v in probe if ";" in v or "|" in v]
    if suspicious:
        logger.warning(
            "label column %r is a string column and no label_separator was given, so each string is ONE "
            "label; values such as %r look delimited: pass label_separator=';' (or '|') to split them.",
            label_column,
            suspicious[0],
        )


def detect_label_format(train: datasets.Dataset, label_column: str, label_separator: str | None) -> str:
    """Guess the format of ``label_column`` from its feature type (and, for int lists, its values)."""
    feature = train.features[label_column]
    if isinstance(feature, datasets.Value) and feature.dtype == "null":
        raise ValueError(
            f"label column {label_column!r} is empty (null) in all {len(train)} train rows: is it the right column? "
            f"The columns are {train.column_names}; pass the one holding the labels as label_column (--label-column)."
        )
    if isinstance(feature, datasets.Json):
        raise ValueError(
            f"label column {label_column!r} holds values of different JSON types in different rows (for example a "
            "string in one row and a list in another). Write every row's labels the same way: a list of names, "
            '["a", "b"], also for a single label (["a"]) or none ([]).'
        )
    inner = inner_feature(feature)
    if inner is not None:
        return _detect_list_format(train, label_column, inner)
    if isinstance(feature, datasets.ClassLabel) or int_kind(feature):
        return "ids"
    if isinstance(feature, datasets.Value) and feature.dtype in ("string", "large_string"):
        if label_separator is None:
            _warn_if_looks_delimited(train, label_column)
        return "delimited"
    raise ValueError(
        f"label column {label_column!r} has the unsupported type {feature}; supported: {SUPPORTED_LABEL_TYPES}."
    )


def check_forced_format(train: datasets.Dataset, label_column: str, label_format: str) -> None:
    """A clear error when a forced ``label_format`` does not fit the column's type."""
    feature = train.features[label_column]
    inner = inner_feature(feature)
    is_string = isinstance(feature, datasets.Value) and feature.dtype in ("string", "large_string")
    inner_null = isinstance(inner, datasets.Value) and inner.dtype == "null"  # every list is empty
    inner_string = isinstance(inner, datasets.Value) and inner.dtype in ("string", "large_string", "null")
    inner_number = isinstance(inner, datasets.ClassLabel) or (
        isinstance(inner, datasets.Value) and (int_kind(inner) or inner.dtype == "bool" or "float" in inner.dtype)
    )
    inner_int = isinstance(inner, datasets.ClassLabel) or int_kind(inner)
    scalar_int = isinstance(feature, datasets.ClassLabel) or int_kind(feature)
    ok = {
        "names": inner_string,
        "delimited": is_string,
        "ids": inner_int or scalar_int or inner_null,
        "multi_hot": inner_number or inner_null,
    }[label_format]
    if not ok:
        raise ValueError(
            f"label_format={label_format!r} does not fit label column {label_column!r} of type {feature}; "
            f"supported: {SUPPORTED_LABEL_TYPES}."
        )


def resolve_label_columns(
    columns: list[str], label_columns: Sequence[str] | None, label_prefix: str | None
) -> tuple[list[str], list[str]]:
    """(column names, label names) for the many-0/1-columns format."""
    if label_columns is not None and label_prefix is not None:
        raise ValueError("Pass label_columns or label_prefix, not both.")
    if label_columns is not None:
        if isinstance(label_columns, str):
            raise ValueError("label_columns must be a list of column names, e.g. ['a', 'b'], not one string.")
        missing = [c for c in label_columns if c not in columns]
        if missing:
            raise ValueError(f"label_columns {missing} are not columns; the columns are {columns}.")
        if len(set(label_columns)) != len(label_columns):
            raise ValueError(f"label_columns has duplicates: {list(label_columns)}.")
        return list(label_columns), list(label_columns)
    chosen = [c for c in columns if c.startswith(label_prefix)]
    if not chosen:
        raise ValueError(f"label_prefix={label_prefix!r} matches no column; the columns are {columns}.")
    # The prefix is stripped from the label names ("label_sports" -> "sports") unless nothing would be left.
    names = [c[len(label_prefix) :] or c for c in chosen]
    return chosen, names


# ----------------------------------------------------------------------------------------------------------------
# Reading one batch: any format -> label names -> label ids
# ----------------------------------------------------------------------------------------------------------------


def binary_matrix(values: Sequence[Any], where: str, indices: Sequence[int]) -> np.ndarray:
    """0/1 values (R of them; or R lists of W) -> an ``(R,)`` (or ``(R, W)``) bool array; ValueError naming the
    first bad row (by its index in ``indices``)."""
    try:
        array = np.asarray(values)
    except ValueError:  # ragged lists
        array = np.empty(0, dtype=object)
    if array.dtype.kind not in "biuf":  # None, strings or nested lists: find the offending row
        for row, value in enumerate(values):
            items = value if isinstance(value, (list, tuple)) else [value]
            for item in items:
                if item is None:
                    raise ValueError(f"{where}: row {indices[row]} is empty (None); fill it with 0 or 1.")
                if isinstance(item, (list, tuple, str)) or item not in (0, 1):
                    raise ValueError(f"{where}: row {indices[row]} holds {item!r}; a multi-hot value must be 0 or 1.")
        array = np.asarray(values, dtype=np.float64)
    bad = ~np.isin(array, (0, 1))
    if bad.any():
        row = int(np.argwhere(bad)[0][0])
        raise ValueError(f"{where}: row {indices[row]} holds {values[row]!r}; a multi-hot value must be 0 or 1.")
    return array.astype(bool)


def _ids_row_names(value: Any, index: int, label_column: str, positional_names: list[str] | None) -> list[str]:
    """One ``"ids"`` value (an id or a list of ids) -> label names (the ids as strings without ``positional_names``)."""
    ids = [value] if not isinstance(value, (list, tuple)) else [v for v in value if v is not None]
    # -1 is datasets' "no label" marker (e.g. ClassLabel columns of unlabeled test splits).
    ids = [v for v in ids if not (isinstance(v, (int, np.integer)) and v == -1)]
    for v in ids:
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
            raise ValueError(f"label column {label_column!r}, row {index}: {v!r} is not a label id (an int >= 0).")
        if positional_names is not None and v >= len(positional_names):
            raise ValueError(
                f"label column {label_column!r}, row {index}: id {v} is outside the "
                f"{len(positional_names)} label_names given; pass all label names or fix the id."
            )
    return [positional_names[v] if positional_names is not None else str(v) for v in ids]


def _multi_hot_row_names(value: Any, index: int, label_column: str, positional_names: list[str]) -> list[str]:
    """One ``"multi_hot"`` row (a 0/1 list of width n) -> the names of its hot positions."""
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"label column {label_column!r}, row {index}: expected a 0/1 list, got {value!r}.")
    if len(value) != len(positional_names):
        raise ValueError(
            f"multi-hot label column {label_column!r}: row {index} has length {len(value)} but other rows "
            f"(or label_names) have length {len(positional_names)}; every multi-hot row must have the same length."
        )
    hot = np.flatnonzero(binary_matrix([value], f"multi-hot label column {label_column!r}", [index])[0])
    return [positional_names[p] for p in hot]


def _row_names(value: Any, index: int, label_format: str, column: str, positional_names, separator) -> list[str]:
    """One non-null label value of a one-column format -> its label names."""
    if label_format == "names":
        return [str(v) for v in value if v is not None and str(v) != ""]
    if label_format == "delimited":
        pieces = value.split(separator) if separator else [value]
        return [p.strip() for p in pieces if p.strip()]
    if label_format == "ids":
        return _ids_row_names(value, index, column, positional_names)
    return _multi_hot_row_names(value, index, column, positional_names)


def labels_to_names(
    batch: dict[str, list],
    indices: list[int],
    *,
    text_column: str,
    label_format: str,
    label_column: str | None,
    source_columns: list[str],
    column_label_names: list[str],
    positional_names: list[str] | None,
    separator: str | None,
    keep_columns: list[str],
) -> dict[str, list]:
    """One batch of R rows in any label format -> ``text``, ``__label_names`` (R lists of label-name strings) and
    ``__label_null`` (R bools: True where the label value was null / missing, read as no labels and counted), plus
    the ``keep_columns``. ``indices`` are the R row numbers, for error messages."""
    names_out: list[list[str]] = []
    null_out: list[bool] = [False] * len(indices)
    if label_format == "columns":
        hot = np.stack(
            [binary_matrix(batch[c], f"label column {c!r}", indices) for c in source_columns], axis=1
        )  # (rows, columns)
        names_array = np.asarray(column_label_names, dtype=object)
        names_out = [names_array[row].tolist() for row in hot]
    else:
        for row, (index, value) in enumerate(zip(indices, batch[label_column])):
            null_out[row] = value is None
            names = (
                []
                if value is None
                else _row_names(value, index, label_format, label_column, positional_names, separator)
            )
            names_out.append(names)
    out = {TEXT_COLUMN: batch[text_column], LABEL_NAMES_COLUMN: names_out, LABEL_NULL_COLUMN: null_out}
    for column in keep_columns:
        out[column] = batch[column]
    return out


def names_to_ids(label_names: list[list[str]], *, label2id: dict[str, int]) -> dict[str, list]:
    """R label-name lists -> R sorted ``labels`` id lists, and ``__dropped`` (R sorted lists of the names outside
    the vocabulary)."""
    ids_out, dropped_out = [], []
    for names in label_names:
        ids = set()
        dropped = []
        for name in names:
            label_id = label2id.get(name)
            if label_id is None:
                dropped.append(name)
            else:
                ids.add(label_id)
        ids_out.append(sorted(ids))
        dropped_out.append(sorted(set(dropped)))
    return {LABELS_COLUMN: ids_out, DROPPED_COLUMN: dropped_out}
