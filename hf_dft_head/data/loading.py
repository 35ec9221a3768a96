"""The generic loader: any multi-label text data set -> train / validation / (test) splits with id-list labels.

:func:`load_multilabel_dataset` returns a :class:`MultiLabelData`: a ``datasets.DatasetDict`` whose splits hold

* ``text``: the input string, and
* ``labels``: the example's gold label set as a *sorted list of label ids* (``List(Value("int32"))``),

plus the :class:`~.formats.LabelVocabulary` (built from the train split only) and a ``summary`` of what was
dropped and why.

Source (the first that applies): ``source`` is a ``datasets.DatasetDict`` or ``Dataset`` (a Dataset is the train
split); ``data_files`` (a path, list, or ``{split: path(s)}``) read with the ``json`` / ``csv`` / ``parquet``
builder chosen from the extension (``.jsonl``, ``.json``, ``.csv``, ``.tsv``, ``.parquet``, optionally ``.gz``
...); ``source`` is a local file (the train split, format from its extension) or folder (``load_dataset(folder)``);
otherwise ``source`` is a Hub id (``datasets.load_dataset(source, config_name, split=split)``). ``split`` selects
one split (``"train[:10%]"``); a single split becomes the train split. Splits are named by their usual aliases
(``dev``/``valid``/``val`` -> validation); ``split_column`` instead reads each row's split from a column.

Labels: ``label_column`` with ``label_format`` in :data:`~.formats.LABEL_FORMATS` (detected when None), or
``label_columns`` / ``label_prefix`` for many 0/1 columns (prefix stripped from the names). ``label_column``
defaults to ``"labels"`` or ``"label"`` if such a column exists.

Vocabulary: built from the train split only (labels with at least ``min_label_count`` train examples), ordered by
name (``vocabulary_order="name"``; numerically for plain int ids) or by descending train frequency. ``label_names``
fixes it instead, in the given order; it also names the ids of an ``"ids"`` column and the positions of a
``"multi_hot"`` column. Labels outside the vocabulary (e.g. seen only in validation/test) are dropped from their
examples with a warning and counted in the summary; an example that loses all its labels is kept with an empty set.

Labels are stored as id lists, not multi-hot rows, on purpose: with n = 100,000 labels a float32 multi-hot row is
400 kB per example, while an id list costs 4 bytes per *gold* label (:mod:`.collate` densifies one batch).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import datasets
import numpy as np
import pyarrow.compute as pc
from datasets.fingerprint import Hasher

from .formats import (
    DROPPED_COLUMN,
    LABEL_FORMATS,
    LABEL_NAMES_COLUMN,
    LABEL_NULL_COLUMN,
    LABELS_COLUMN,
    TEXT_COLUMN,
    LabelVocabulary,
    check_forced_format,
    detect_label_format,
    flat_label_values,
    inner_feature,
    int_kind,
    labels_to_names,
    names_to_ids,
    resolve_label_columns,
)
from .sources import DataFilesArgument, load_raw_splits

logger = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")

# Split names seen on the Hub and in local folders, mapped to the three splits the training loop uses.
SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "validation": "validation",
    "valid": "validation",
    "val": "validation",
    "dev": "validation",
    "development": "validation",
    "test": "test",
    "testing": "test",
}

# The source of every module of this package, in the cache key of the label steps (see _code_fingerprint).
_SOURCE_SHA256 = hashlib.sha256(b"".join(path.read_bytes() for path in sorted(Path(__file__).parent.glob("*.py"))))
_SOURCE_SHA256 = _SOURCE_SHA256.hexdigest()


@dataclass
class MultiLabelData:
    """What the loaders return.

    ``dataset``: a DatasetDict with ``train``, ``validation`` and optionally ``test``; columns ``text`` (str) and
    ``labels`` (sorted int32 label-id list, ids index ``vocabulary``), plus any ``keep_columns``.
    ``vocabulary``: the labels of the train split. ``summary``: what the loader did (see
    :func:`load_multilabel_dataset`).
    """

    dataset: datasets.DatasetDict
    vocabulary: LabelVocabulary
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def num_labels(self) -> int:
        """n, the number of labels."""
        return self.vocabulary.num_labels


@dataclass
class _LabelSource:
    """Where a table's labels are and how they are written (the arguments of :func:`~.formats.labels_to_names`)."""

    label_format: str
    label_column: str | None
    source_columns: list[str]
    column_label_names: list[str] = field(default_factory=list)
    positional_names: list[str] | None = None  # names of the ids / multi-hot positions
    numeric_names: bool = False  # names are numbers: sort "2" before "10"


# ----------------------------------------------------------------------------------------------------------------
# Splits
# ----------------------------------------------------------------------------------------------------------------


def _value_in_set(values: list, wanted: list) -> list[bool]:
    wanted_set = set(wanted)
    return [v in wanted_set for v in values]


def _splits_from_column(raw: dict[str, datasets.Dataset], split_column: str) -> dict[str, datasets.Dataset]:
    """One unsplit table -> its rows per split, by the value of ``split_column`` (split names or aliases)."""
    if len(raw) != 1:
        raise ValueError(
            f"split_column={split_column!r} needs one unsplit table, but the source has splits {sorted(raw)}; "
            "drop split_column or pass a single split."
        )
    (table,) = raw.values()
    if split_column not in table.column_names:
        raise ValueError(f"split_column={split_column!r} is not a column; the columns are {table.column_names}.")
    values = Counter(table[split_column][:])
    unknown = sorted(str(v) for v in values if str(v).strip().lower() not in SPLIT_ALIASES)
    if unknown:
        raise ValueError(
            f"split_column={split_column!r} holds values {unknown[:10]} that are not split names; allowed: "
            f"{sorted(SPLIT_ALIASES)}."
        )
    splits = {}
    for target in SPLITS:
        wanted = {v for v in values if SPLIT_ALIASES[str(v).strip().lower()] == target}
        if wanted:
            splits[target] = table.filter(
                _value_in_set,
                batched=True,
                input_columns=[split_column],
                fn_kwargs={"wanted": sorted(wanted)},
                desc=f"Selecting {target} rows",
            )
    return splits


def assign_splits(raw: dict[str, datasets.Dataset], split_column: str | None) -> dict[str, datasets.Dataset]:
    """Map raw split names (or the values of ``split_column``) onto train / validation / test."""
    if split_column is not None:
        return _splits_from_column(raw, split_column)
    splits: dict[str, datasets.Dataset] = {}
    ignored = []
    for name, table in raw.items():
        target = SPLIT_ALIASES.get(str(name).lower())
        if target is None:
            ignored.append(name)
        elif target in splits:
            raise ValueError(f"splits: both {name!r} and another split map to {target!r}; pass split=... to choose.")
        else:
            splits[target] = table
    if ignored:
        logger.warning("Ignoring splits %s: only train / validation / test (and their aliases) are used.", ignored)
    if "train" not in splits:
        raise ValueError(f"No train split: the source has splits {sorted(raw)}; pass split=... or split_column=...")
    return splits


def _carve(table: datasets.Dataset, size: int, seed: int, what: str) -> tuple[datasets.Dataset, datasets.Dataset]:
    if size < 1 or size >= len(table):
        raise ValueError(
            f"Cannot carve a {what} split of {size} rows from a train split of {len(table)} rows; change "
            f"{what}_fraction or provide a {what} split."
        )
    parts = table.train_test_split(test_size=size, seed=seed, shuffle=True)
    return parts["train"], parts["test"]


def _carve_missing_splits(splits: dict, summary: dict, validation_fraction: float, test_fraction: float) -> None:
    """Carve missing test / validation splits from train (test first, so both fractions are of the same rows)."""
    n_train, seed = len(splits["train"]), summary["seed"]
    if "test" not in splits and test_fraction > 0:
        splits["train"], splits["test"] = _carve(splits["train"], round(test_fraction * n_train), seed, "test")
        summary["carved"].append("test")
    if "validation" not in splits and validation_fraction > 0:
        splits["train"], splits["validation"] = _carve(
            splits["train"], max(1, round(validation_fraction * n_train)), seed, "validation"
        )
        summary["carved"].append("validation")
    for name in summary["carved"]:
        summary["splits"][name] = {"rows_loaded": len(splits[name]), "empty_texts_dropped": 0}


# ----------------------------------------------------------------------------------------------------------------
# Columns and label format
# ----------------------------------------------------------------------------------------------------------------


def _check_options(label_format, validation_fraction, test_fraction, min_label_count, keep_columns) -> None:
    """Refuse loader options that cannot work, before anything is read."""
    if label_format is not None and label_format not in LABEL_FORMATS:
        raise ValueError(f"label_format must be one of {LABEL_FORMATS} or None, got {label_format!r}.")
    for name, fraction in (("validation_fraction", validation_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= fraction < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {fraction!r}.")
    if min_label_count < 1:
        raise ValueError(f"min_label_count must be >= 1, got {min_label_count}.")
    for column in keep_columns:
        if column in (TEXT_COLUMN, LABELS_COLUMN) or column.startswith("__"):
            raise ValueError(f"keep_columns: {column!r} is a reserved output column name; rename it first.")


def _check_text_column(train: datasets.Dataset, text_column: str) -> None:
    if text_column not in train.column_names:
        raise ValueError(f"text_column={text_column!r} is not a column; the columns are {train.column_names}.")
    text_feature = train.features[text_column]
    if not (isinstance(text_feature, datasets.Value) and text_feature.dtype in ("string", "large_string")):
        raise ValueError(f"text_column={text_column!r} must hold strings, but its type is {text_feature}.")


def _check_split_columns(splits: dict[str, datasets.Dataset], needed: list[str]) -> None:
    for name, table in splits.items():
        missing = [c for c in needed if c not in table.column_names]
        if missing:
            raise ValueError(f"split {name!r} lacks the columns {missing}; its columns are {table.column_names}.")


def _new_summary(labels: _LabelSource, text_column: str, seed: int) -> dict[str, Any]:
    """The loader's summary before any split is read (see :func:`load_multilabel_dataset`)."""
    return {
        "label_format": labels.label_format,
        "text_column": text_column,
        "label_source": labels.source_columns if labels.label_format == "columns" else labels.label_column,
        "carved": [],
        "seed": seed,
        "splits": {},
    }


def _binary_columns_source(train, label_column, label_columns, label_prefix, label_format) -> _LabelSource:
    """The many-0/1-columns format: which columns, and the label names they stand for."""
    if label_column is not None:
        raise ValueError("Pass label_column (one column) or label_columns/label_prefix (many 0/1 columns), not both.")
    if label_format not in (None, "columns"):
        raise ValueError(f"label_columns/label_prefix mean label_format='columns', not {label_format!r}.")
    source_columns, column_label_names = resolve_label_columns(train.column_names, label_columns, label_prefix)
    for column in source_columns:
        feature = train.features[column]
        if not (
            isinstance(feature, datasets.Value)
            and (int_kind(feature) or feature.dtype in ("bool",) or feature.dtype.startswith("float"))
        ):
            raise ValueError(
                f"label column {column!r} has type {feature}; a label column in label_columns/label_prefix must "
                "hold 0/1 (int, float or bool)."
            )
    return _LabelSource("columns", None, source_columns, column_label_names)


def _label_column_source(train, label_column, label_format, label_separator) -> _LabelSource:
    """A one-column format: which column (``labels`` / ``label`` by default) and its format (detected if None)."""
    columns = train.column_names
    if label_format == "columns":
        raise ValueError("label_format='columns' needs label_columns=[...] or label_prefix='...'.")
    if label_column is None:
        label_column = next((c for c in (LABELS_COLUMN, "label") if c in columns), None)
        if label_column is None:
            raise ValueError(
                f"No label column given and none named 'labels' or 'label'; the columns are {columns}. Pass "
                "label_column=..., label_columns=[...] or label_prefix='...'."
            )
    if label_column not in columns:
        raise ValueError(f"label_column={label_column!r} is not a column; the columns are {columns}.")
    if label_format is None:
        label_format = detect_label_format(train, label_column, label_separator)
    else:
        check_forced_format(train, label_column, label_format)
    return _LabelSource(label_format, label_column, [label_column])


def _name_positions(train: datasets.Dataset, source: _LabelSource, label_names: Sequence[str] | None) -> None:
    """Set the names of an ``"ids"`` column's ids / a ``"multi_hot"`` column's positions on ``source``."""
    if source.label_format == "ids":
        inner = inner_feature(train.features[source.label_column]) or train.features[source.label_column]
        if label_names is not None:
            source.positional_names = [str(n) for n in label_names]
        elif isinstance(inner, datasets.ClassLabel):
            source.positional_names = list(inner.names)
        else:
            source.numeric_names = True
    elif source.label_format == "multi_hot":
        lengths, _ = flat_label_values(train, source.label_column)
        if len(lengths) and int(lengths.min()) != int(lengths.max()):
            bad_row = int(np.argmax(lengths != lengths[0]))
            raise ValueError(
                f"multi-hot label column {source.label_column!r}: row {bad_row} has length {int(lengths[bad_row])} "
                f"but row 0 has length {int(lengths[0])}; every multi-hot row must have the same length."
            )
        width = int(lengths[0]) if len(lengths) else 0
        if label_names is not None:
            if len(label_names) != width:
                raise ValueError(
                    f"label_names has {len(label_names)} names but the multi-hot rows have length {width}."
                )
            source.positional_names = [str(n) for n in label_names]
        else:
            source.positional_names = [str(p) for p in range(width)]
            source.numeric_names = True


# ----------------------------------------------------------------------------------------------------------------
# The map steps (cached by datasets, keyed on this package's source)
# ----------------------------------------------------------------------------------------------------------------


def _code_fingerprint(table: datasets.Dataset, step: str, arguments: Any) -> str:
    """The ``datasets`` cache key of one step of this package on ``table``, including this package's source code.

    ``datasets`` fingerprints a ``map`` by its function's *name* when the function lives in an importable module
    (dill pickles it by reference), so after a change to that function it would reuse the results cached by the
    old code. Keying on the source keeps a cache from outliving the code that wrote it.

    ``arguments`` (JSON-able option values) enter as their :func:`_json_sha256`; the n label names are passed as
    their digest, computed once for all splits.
    """
    return Hasher.hash([table._fingerprint, step, _json_sha256(arguments), _SOURCE_SHA256])


def _json_sha256(value: Any) -> str:
    """sha256 of ``value``'s JSON text: every key, value and their order, so different values give different digests.

    ``Hasher.hash`` pickles a value object by object with dill: 7 s for a 100k-entry ``label2id`` under a profiler,
    45 s at 1M labels, per split; ``json.dumps`` + sha256 is C code (0.5 s for 1M names on a loaded machine).
    """
    return hashlib.sha256(json.dumps(value, ensure_ascii=False).encode()).hexdigest()


def _read_label_names(splits: dict, source: _LabelSource, text_column: str, keep_columns: list, separator) -> None:
    """Every split's labels as names (in place), while row numbers are still those of the split as loaded, so that
    an error names the row the user can find. Only the needed columns travel on: selecting is free, gathering
    unused ones (40 in the disaster CSV) on every later step is not."""
    fn_kwargs = {
        "text_column": text_column,
        "label_format": source.label_format,
        "label_column": source.label_column,
        "source_columns": source.source_columns,
        "column_label_names": source.column_label_names,
        "positional_names": source.positional_names,
        "separator": separator,
        "keep_columns": keep_columns,
    }
    needed = list(dict.fromkeys([text_column, *source.source_columns, *keep_columns]))
    for name in list(splits):
        table = splits[name].select_columns(needed)
        try:
            splits[name] = table.map(
                labels_to_names,
                with_indices=True,
                batched=True,
                remove_columns=table.column_names,
                fn_kwargs=fn_kwargs,
                new_fingerprint=_code_fingerprint(table, "labels_to_names", fn_kwargs),
                desc=f"Reading labels ({name})",
            )
        except ValueError as error:
            raise ValueError(f"split {name!r} (rows counted from 0 as loaded): {error}") from error


def _has_text(texts: list) -> list[bool]:
    return [isinstance(t, str) and t.strip() != "" for t in texts]


def _drop_empty_texts(splits: dict, summary: dict, text_column: str, columns: list[str]) -> None:
    """Drop rows whose text is empty or whitespace (in place, counted in ``summary``); refuse a split left empty."""
    for name in list(splits):
        table = splits[name]
        kept = table.filter(_has_text, batched=True, input_columns=[TEXT_COLUMN], desc=f"Dropping empty texts ({name})")
        dropped = len(table) - len(kept)
        summary["splits"][name] = {"rows_loaded": len(table), "empty_texts_dropped": dropped}
        if dropped:
            logger.warning(
                "Dropped %d of %d %s rows with an empty text in column %r.", dropped, len(table), name, text_column
            )
        if len(kept) == 0:
            raise ValueError(
                f"split {name!r} has no rows with a non-empty text in column {text_column!r} ({len(table)} rows "
                f"loaded); check text_column (the columns are {columns})."
            )
        splits[name] = kept


def _train_vocabulary(train, source: _LabelSource, label_names, order, min_count, summary) -> LabelVocabulary:
    """``label_names`` when given, else the labels of the train split (see the module docstring)."""
    if label_names is not None:
        vocabulary = LabelVocabulary(tuple(str(n) for n in label_names))
    else:
        counts: Counter = Counter()
        for names in train[LABEL_NAMES_COLUMN][:]:
            counts.update(set(names))
        vocabulary = LabelVocabulary.from_counts(
            counts, order=order, min_count=min_count, numeric_names=source.numeric_names
        )
    if len(vocabulary) == 0:
        raise ValueError(
            f"The train split has no labels at all (label source {summary['label_source']!r}, format "
            f"{source.label_format!r}, {len(train)} rows); check the label column(s) and label_format."
        )
    return vocabulary


def _encode_split(
    table: datasets.Dataset, name: str, label2id: dict[str, int], labels_sha256: str, keep_columns: list
) -> Any:
    """Label names -> ids of one split: ``(table with labels and __dropped, null label rows)``;
    ``labels_sha256`` (:func:`_json_sha256` of the vocabulary's names in id order) is its part of the cache key."""
    null_labels = pc.sum(table.with_format("arrow")[:][LABEL_NULL_COLUMN]).as_py() or 0
    features = datasets.Features(
        {
            TEXT_COLUMN: datasets.Value("string"),
            **{c: table.features[c] for c in keep_columns},
            LABELS_COLUMN: datasets.List(datasets.Value("int32")),
            DROPPED_COLUMN: datasets.List(datasets.Value("string")),
        }
    )
    encoded = table.map(
        names_to_ids,
        batched=True,
        input_columns=[LABEL_NAMES_COLUMN],
        remove_columns=[LABEL_NAMES_COLUMN, LABEL_NULL_COLUMN],
        fn_kwargs={"label2id": label2id},
        features=features,
        new_fingerprint=_code_fingerprint(table, "names_to_ids", [labels_sha256, features.to_dict()]),
        desc=f"Encoding labels ({name})",
    )
    return encoded, null_labels


def _report_split(table, name: str, null_labels: int, info: dict, label_column, why_dropped: str) -> None:
    """Count the labels dropped from one split and the rows with no label value into ``info``; warn about both."""
    dropped_counts: Counter = Counter()
    losing = 0
    for dropped in table[DROPPED_COLUMN][:]:
        if dropped:
            losing += 1
            dropped_counts.update(dropped)
    info.update(
        rows=len(table),
        null_labels=null_labels,
        examples_with_dropped_labels=losing,
        dropped_label_occurrences=sum(dropped_counts.values()),
        dropped_labels=dict(sorted(dropped_counts.items(), key=lambda item: (-item[1], item[0]))),
    )
    if null_labels:
        # Kept, not refused: a missing value is how CSV (an empty cell) and many JSON writers (null, or no key)
        # write "no labels", and unlabelled examples are normal in multi-label data. Counted so that a wrong
        # column or a broken export (most rows null) shows in the summary and the log.
        logger.warning(
            "%s split: %d of %d rows have no value (null / missing) in label column %r; they are read as having "
            "no labels. If that is wrong, fill them in or pick the right label column.",
            *(name, null_labels, len(table), label_column),
        )
    if losing:
        shown = ", ".join(f"{label!r} ({count})" for label, count in list(info["dropped_labels"].items())[:10])
        logger.warning(
            "%s split: dropped %d occurrence(s) of %d label(s) %s from %d example(s): %s%s",
            *(name, info["dropped_label_occurrences"], len(dropped_counts), why_dropped, losing, shown),
            " ..." if len(dropped_counts) > 10 else "",
        )


def _why_dropped(name: str, label_names: Sequence[str] | None, min_label_count: int) -> str:
    if label_names is not None:
        return "outside the given label_names"
    if name == "train":
        return f"seen in fewer than min_label_count={min_label_count} train examples"
    return "not in the train split"


# ----------------------------------------------------------------------------------------------------------------
# The loader
# ----------------------------------------------------------------------------------------------------------------


def load_multilabel_dataset(
    source: Any = None,
    *,
    config_name: str | None = None,
    split: str | None = None,
    data_files: DataFilesArgument | None = None,
    text_column: str = "text",
    label_column: str | None = None,
    label_columns: Sequence[str] | None = None,
    label_prefix: str | None = None,
    label_format: str | None = None,
    label_separator: str | None = None,
    label_names: Sequence[str] | None = None,
    vocabulary_order: Literal["name", "frequency"] = "name",
    min_label_count: int = 1,
    split_column: str | None = None,
    validation_fraction: float = 0.1,
    test_fraction: float = 0.0,
    seed: int = 42,
    keep_columns: Sequence[str] = (),
    cache_dir: str | os.PathLike | None = None,
    load_kwargs: Mapping[str, Any] | None = None,
) -> MultiLabelData:
    """Load a multi-label text data set into train / validation / (test) splits with id-list labels.

    The source, label and vocabulary options are described in the module docstring. Rows with an empty or
    whitespace-only text are dropped with a warning (counted in the summary). A missing validation split is carved
    from train (``validation_fraction`` of the train rows, seeded ``train_test_split``); a missing test split is
    carved first when ``test_fraction > 0``. Both fractions are of the train rows before carving.

    Returns:
        :class:`MultiLabelData` whose ``dataset`` splits have the columns ``text`` (str), ``labels`` (sorted int32
        label ids, length 0..n per row) and ``keep_columns``. ``summary`` holds ``label_format``, ``num_labels``,
        ``carved`` (split names carved from train), and per split (``summary["splits"][name]``): ``rows_loaded``,
        ``empty_texts_dropped``, ``rows``, ``null_labels`` (rows whose label value is null or missing: read as no
        labels, with a warning), ``examples_with_dropped_labels``, ``dropped_label_occurrences`` and
        ``dropped_labels`` (``{label name: examples}``).

    Raises:
        ValueError: a missing text or label column (the message lists the existing columns), a label column of an
            unsupported type, malformed multi-hot / 0-1 values, a split that is empty after dropping empty texts,
            or a train split with no labels at all.
        DataFileError (a ValueError): a local file that is missing, a folder, empty, not UTF-8 or does not parse
            (the message names the file and, for JSON lines, the line), or a Hub id that cannot be loaded.
    """
    keep_columns = list(keep_columns)
    _check_options(label_format, validation_fraction, test_fraction, min_label_count, keep_columns)
    raw = load_raw_splits(
        source,
        config_name=config_name,
        split=split,
        data_files=data_files,
        cache_dir=cache_dir,
        load_kwargs=load_kwargs,
    )
    splits = assign_splits(raw, split_column)
    train = splits["train"]
    _check_text_column(train, text_column)
    if label_columns is not None or label_prefix is not None:
        labels = _binary_columns_source(train, label_column, label_columns, label_prefix, label_format)
    else:
        labels = _label_column_source(train, label_column, label_format, label_separator)
    _check_split_columns(splits, [text_column, *labels.source_columns, *keep_columns])
    _name_positions(train, labels, label_names)
    summary = _new_summary(labels, text_column, seed)
    _read_label_names(splits, labels, text_column, keep_columns, label_separator)
    _drop_empty_texts(splits, summary, text_column, train.column_names)
    _carve_missing_splits(splits, summary, validation_fraction, test_fraction)
    vocabulary = _train_vocabulary(splits["train"], labels, label_names, vocabulary_order, min_label_count, summary)
    summary["num_labels"] = len(vocabulary)
    out = {}
    label2id = vocabulary.label2id
    labels_sha256 = _json_sha256(vocabulary.labels)  # the names in id order determine label2id
    for name in (name for name in SPLITS if name in splits):
        table, null_labels = _encode_split(splits[name], name, label2id, labels_sha256, keep_columns)
        why = _why_dropped(name, label_names, min_label_count)
        _report_split(table, name, null_labels, summary["splits"][name], labels.label_column, why)
        out[name] = table.remove_columns([DROPPED_COLUMN])
    return MultiLabelData(datasets.DatasetDict(out), vocabulary, summary)
