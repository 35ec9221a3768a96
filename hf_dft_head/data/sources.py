"""Reading a data source into raw tables: local files, folders, Hub ids or ``datasets`` objects -> ``{split name:
Dataset}``, with a clear error naming the file (and line) instead of a parser traceback.

Nothing here knows about labels: :mod:`.loading` maps the raw splits onto train / validation / test and reads the
labels (:mod:`.formats`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import datasets
import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

# File extension -> (datasets packaged builder, extra builder kwargs).
BUILDERS = {
    ".jsonl": ("json", {}),
    ".json": ("json", {}),
    ".ndjson": ("json", {}),
    ".csv": ("csv", {}),
    ".tsv": ("csv", {"sep": "\t"}),
    ".parquet": ("parquet", {}),
    ".pq": ("parquet", {}),
}
COMPRESSION_SUFFIXES = (".gz", ".bz2", ".xz", ".zst", ".zstd")

# Files are read in blocks of this size when checked; a block is cut at its last newline, so a UTF-8 sequence is
# never split between blocks and line numbers are exact.
_CHECK_BLOCK_BYTES = 1 << 22

DataFilesArgument = str | Sequence[str] | Mapping[str, str | Sequence[str]]


class DataFileError(ValueError):
    """A data source that cannot be read (missing, a folder, empty, not UTF-8, malformed, unreachable Hub id).

    The message names the file (and the line, where there is one) and what to do about it.
    """


def strip_compression(path: str) -> str:
    """``path`` without a compression suffix (``a.jsonl.gz`` -> ``a.jsonl``)."""
    lowered = path.lower()
    for suffix in COMPRESSION_SUFFIXES:
        if lowered.endswith(suffix):
            return path[: -len(suffix)]
    return path


def file_list(data_files: DataFilesArgument) -> list[str]:
    """Every path named in ``data_files`` (a path, a list, or ``{split: path or paths}``), in order."""
    if isinstance(data_files, (str, os.PathLike)):
        return [str(data_files)]
    if isinstance(data_files, Mapping):
        files = []
        for value in data_files.values():
            files.extend([str(value)] if isinstance(value, (str, os.PathLike)) else [str(v) for v in value])
        return files
    return [str(f) for f in data_files]


def builder_for_files(data_files: DataFilesArgument) -> tuple[str, dict]:
    """The ``datasets`` packaged builder ("json", "csv" or "parquet") and its kwargs for these files' extension.

    Compression suffixes (``.gz``, ``.bz2``, ``.xz``, ``.zst``) are looked through. All files must share one format.
    """
    files = file_list(data_files)
    if not files:
        raise ValueError("data_files is empty; pass at least one .jsonl/.json/.csv/.tsv/.parquet file.")
    found = set()
    for file in files:
        suffix = Path(strip_compression(file)).suffix.lower()
        if suffix not in BUILDERS:
            raise ValueError(
                f"data_files: cannot tell the format of {file!r} from its extension {suffix!r}; supported: "
                f"{sorted(BUILDERS)} (optionally compressed with {list(COMPRESSION_SUFFIXES)})."
            )
        found.add(suffix)
    builders = {BUILDERS[suffix][0] for suffix in found}
    if len(builders) > 1 or (found & {".csv", ".tsv"} == {".csv", ".tsv"}):
        raise ValueError(f"data_files mixes formats {sorted(found)}; use one format for all splits.")
    builder, kwargs = BUILDERS[found.pop()]
    return builder, dict(kwargs)


# ----------------------------------------------------------------------------------------------------------------
# Checking a local file before datasets parses it, and explaining a parse failure
# ----------------------------------------------------------------------------------------------------------------


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


def _check_parquet_file(path: str) -> None:
    """Refuse an (uncompressed) Parquet file that is not valid or has 0 rows."""
    try:
        rows = pq.ParquetFile(path).metadata.num_rows
    except (pa.ArrowException, OSError) as error:
        raise DataFileError(
            f"{path} is not a valid Parquet file ({error}); re-export it, or give it the extension of its real "
            "format (.jsonl, .csv)."
        ) from None
    if rows == 0:
        raise DataFileError(f"{path} is a Parquet file with 0 rows: it has no data. Pass a file with data.")


def check_data_file(path: str | os.PathLike) -> None:
    """Refuse a local data file that cannot hold a table, before ``datasets`` parses it.

    Raises :class:`DataFileError` when ``path`` does not exist, is a folder, has 0 bytes, is a Parquet file that is
    not valid or has 0 rows, or is a JSON / CSV file (compressed or not) that holds only whitespace or is not
    UTF-8. Text files are read once in blocks (about 1.5 s per GB); nothing else is checked here, since a syntax
    error is found (and explained by :func:`explain_load_failure`) when ``datasets`` parses the file.
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
    stem = strip_compression(path)
    if BUILDERS.get(Path(stem).suffix.lower(), ("",))[0] == "parquet":
        if stem == path:  # a compressed Parquet file is left to datasets
            _check_parquet_file(path)
        return
    _scan_text_file(path)


def _first_content_line(text: str) -> int:
    return next((number for number, line in enumerate(text.splitlines(), start=1) if line.strip()), 0)


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


def explain_load_failure(files: list[str], builder: str, error: BaseException) -> str:
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
    suffix = Path(strip_compression(source)).suffix.lower()
    return suffix in BUILDERS or source.startswith(("/", "./", "../", "~")) or source.count("/") > 1


# ----------------------------------------------------------------------------------------------------------------
# Loading: one function per kind of source
# ----------------------------------------------------------------------------------------------------------------


def _load_data_files(source: Any, data_files: DataFilesArgument, config_name, split, load_kwargs) -> Any:
    """``data_files`` (local, or paths inside the data set ``source``, e.g. a Hub repo) -> what ``load_dataset``
    returns."""
    if source is not None and not isinstance(source, (str, os.PathLike)):
        raise ValueError(f"source: expected None, a path or a Hub id next to data_files, got {type(source)}.")
    local = source is None  # with a source, data_files are paths inside that data set (e.g. a Hub repo)
    files = [file for file in file_list(data_files) if _is_local_path(file)] if local else []
    for file in files:  # a folder first: its missing extension would otherwise be the complaint
        if os.path.isdir(file):
            check_data_file(file)
    builder, builder_kwargs = builder_for_files(data_files)
    for file in files:
        check_data_file(file)
    builder = str(source) if source is not None else builder
    try:
        return datasets.load_dataset(
            builder, config_name, data_files=data_files, split=split, **builder_kwargs, **load_kwargs
        )
    except Exception as error:  # whatever the parser raises: user data, so a message and not a traceback
        if not local:
            raise _remote_failure(str(source), error) from None
        raise DataFileError(explain_load_failure(files, builder, error)) from None


def _load_local_file(source: str | os.PathLike, split, load_kwargs) -> Any:
    """One local data file, read as the train split."""
    builder, builder_kwargs = builder_for_files(str(source))
    check_data_file(source)
    try:
        return datasets.load_dataset(
            builder, data_files={"train": str(source)}, split=split, **builder_kwargs, **load_kwargs
        )
    except Exception as error:  # see _load_data_files
        raise DataFileError(explain_load_failure([str(source)], builder, error)) from None


def _load_folder(source: str | os.PathLike, config_name, split, load_kwargs) -> Any:
    """A local folder: ``datasets`` infers the train/validation/test files by their names."""
    try:
        return datasets.load_dataset(str(source), config_name, split=split, **load_kwargs)
    except Exception as error:  # see _load_data_files
        raise DataFileError(
            f"cannot load the folder {source} as a data set ({type(error).__name__}: {str(error).strip()}). It "
            "must hold data files (.jsonl/.json/.csv/.tsv/.parquet) named by split (train.jsonl, "
            "validation.jsonl, test.jsonl); or pass the files with --data-files train=PATH ..."
        ) from None


def _load_hub_id(source: str | os.PathLike, config_name, split, load_kwargs) -> Any:
    """A Hub data set id (with an optional config); a string that looks like a missing local path is refused."""
    if _looks_like_a_path(str(source)):
        check_data_file(source)  # raises: it does not exist
    try:
        return datasets.load_dataset(str(source), config_name, split=split, **load_kwargs)
    except Exception as error:  # see _load_data_files
        raise _remote_failure(str(source), error) from None


def load_raw_splits(
    source: Any,
    *,
    config_name: str | None,
    split: str | None,
    data_files: DataFilesArgument | None,
    cache_dir: str | os.PathLike | None,
    load_kwargs: Mapping[str, Any] | None,
) -> dict[str, datasets.Dataset]:
    """Whatever the user pointed at -> ``{raw split name: Dataset}`` (a single table is ``{"train": table}``)."""
    load_kwargs = dict(load_kwargs or {})
    if cache_dir is not None:
        load_kwargs["cache_dir"] = str(cache_dir)
    if isinstance(source, (datasets.DatasetDict, datasets.Dataset)):
        loaded: Any = source
    elif isinstance(source, (datasets.IterableDataset, datasets.IterableDatasetDict)):
        raise ValueError("source: streaming (Iterable) datasets are not supported; load without streaming=True.")
    elif data_files is not None:
        loaded = _load_data_files(source, data_files, config_name, split, load_kwargs)
    elif isinstance(source, (str, os.PathLike)) and Path(source).is_file():
        loaded = _load_local_file(source, split, load_kwargs)
    elif isinstance(source, (str, os.PathLike)) and Path(source).is_dir():
        loaded = _load_folder(source, config_name, split, load_kwargs)
    elif isinstance(source, (str, os.PathLike)):
        loaded = _load_hub_id(source, config_name, split, load_kwargs)
    else:
        raise ValueError(
            f"source: expected a Hub id, a local file or folder, a datasets.Dataset or DatasetDict, or data_files=..., "
            f"got {source!r}."
        )
    if isinstance(loaded, datasets.Dataset):
        return {"train": loaded}
    return dict(loaded)
