"""Which data a command works on, as one record.

* :class:`DataArguments`: where a data set is and how to read its labels (``--dataset``, ``--data-files``,
  ``--label-column`` ...). Every command takes these; ``hf-dft train``'s arguments extend them, so
  ``training_args.json`` holds them at its top level next to the run's ``seed``.
* :class:`DataSpec`: those options plus the ``split`` and the ``seed`` that carves a validation split the way
  training did: what ``audit``, ``evaluate``, ``tune-thresholds`` and ``certify`` work on, and what a certificate
  records (``audit.dataset``). :meth:`DataSpec.to_record` writes it (flat JSON, local paths absolute) and
  :meth:`DataSpec.from_record` is the one reader, of a certificate's record and of a ``training_args.json`` alike.

:func:`load_data` loads what the options name; :func:`load_split` the one split a spec names, with a model's label
vocabulary.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .bundled import NAMED_DATASETS, load_named_dataset
from .formats import LABEL_FORMATS, TEXT_COLUMN
from .loading import MultiLabelData, load_multilabel_dataset

#: The file ``hf-dft train`` writes its arguments to (the data options at the top level).
TRAINING_ARGS_NAME = "training_args.json"


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

    def given(self) -> bool:
        """Whether any data option differs from its default (else a command uses the data the run trained on)."""
        return any(getattr(self, f.name) != f.default for f in dataclasses.fields(DataArguments))

    @property
    def bundled(self) -> str | None:
        """The name of the bundled data set these options name (the default one when none is named), else None."""
        if self.dataset in NAMED_DATASETS:
            return self.dataset
        return NAMED_DATASETS[0] if self.dataset is None and not self.data_files else None

    @property
    def source(self) -> str:
        """A short name of the data: the data set, or the files, or the bundled default."""
        return self.dataset or ", ".join(self.data_files or []) or NAMED_DATASETS[0]


@dataclass(kw_only=True)
class DataSpec(DataArguments):
    """One split of one data set: the data options, the split, and the seed that carves a missing validation split
    the way training did. Recorded flat (:meth:`to_record`) and read back by :meth:`from_record`."""

    split: str = field(default="test", metadata={"help": "split of the data to use"})
    seed: int = field(
        default=42, metadata={"help": "seed that carves a validation split when the data has none (as in training)"}
    )

    def to_record(self) -> dict[str, Any]:
        """The JSON-ready record: every field in declaration order, local paths made absolute (so the record works
        from another folder). This is the ``dataset`` section of a certificate's audit, less what the audit adds."""
        record = dataclasses.asdict(self)
        if self.dataset is not None and self.dataset not in NAMED_DATASETS and Path(self.dataset).exists():
            record["dataset"] = str(Path(self.dataset).resolve())
        if self.data_files:
            record["data_files"] = [_absolute_data_file(entry) for entry in self.data_files]
        return record

    @classmethod
    def from_record(cls, record: Mapping[str, Any], **overrides: Any) -> DataSpec:
        """The spec in ``record``: a :meth:`to_record` dict (e.g. a certificate's ``audit.dataset``) or a run's
        ``training_args.json``; keys that are not fields (the audit's counts, the run's other arguments) are
        ignored, missing ones take their defaults. ``overrides`` (e.g. ``split="validation"``) replace fields.

        Raises ValueError naming the field when a value has the wrong type (a hand-edited or damaged record).
        """
        if not isinstance(record, Mapping):
            raise ValueError(f"a data record must be a JSON object, got {type(record).__name__}.")
        names = {f.name for f in dataclasses.fields(cls)}
        values = {key: value for key, value in record.items() if key in names}
        values.update(overrides)
        for name in ("data_files", "label_columns"):
            entries = values.get(name)
            if entries is not None and (isinstance(entries, str) or not isinstance(entries, Sequence)):
                raise ValueError(f"the data record's {name} must be a list of strings, got {entries!r}.")
        if isinstance(values.get("seed"), bool) or not isinstance(values.get("seed", 0), int):
            raise ValueError(f"the data record's seed must be an integer, got {values['seed']!r}.")
        if not isinstance(values.get("split", ""), str):
            raise ValueError(f"the data record's split must be a split name, got {values['split']!r}.")
        return cls(**values)

    def describe(self) -> str:
        """``source / split``, e.g. ``/data/test.jsonl / test`` or ``disaster_response (bundled) / test``."""
        source = self.dataset or ", ".join(self.data_files or []) or f"{NAMED_DATASETS[0]} (bundled)"
        return f"{source} / {self.split}"


def _absolute_data_file(entry: str) -> str:
    split, sep, path = entry.partition("=")
    if not sep:
        split, path = "", entry
    if Path(path).exists():
        path = str(Path(path).resolve())
    return f"{split}={path}" if sep else path


def read_training_data_spec(run_folder: str | os.PathLike, split: str) -> DataSpec:
    """The spec of ``split`` of the data ``hf-dft train`` recorded in the run's ``training_args.json`` (its data
    options, or the bundled default when it named none, and its seed, so a validation split is carved the same way).

    Raises ValueError naming the file and the fix (``--dataset``) when it is missing or not a run's arguments.
    """
    path = Path(run_folder) / TRAINING_ARGS_NAME
    if not path.is_file():
        raise ValueError(f"{run_folder} has no {TRAINING_ARGS_NAME} to take the data from: pass --dataset.")
    try:
        recorded = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON ({error}): pass --dataset.") from None
    if not isinstance(recorded, dict):
        raise ValueError(f"{path} does not hold a run's arguments: pass --dataset.")
    try:
        return DataSpec.from_record(recorded, split=split)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{path}: {error} Pass --dataset.") from None


# ----------------------------------------------------------------------------------------------------------------
# Loading what the options name
# ----------------------------------------------------------------------------------------------------------------


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
    if args.bundled is not None:
        return load_named_dataset(args.bundled, seed=seed)
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


def _split_as_train(spec: DataSpec) -> tuple[DataSpec, str]:
    """Local files of one split, rewritten so that the loader reads them as its train split (nothing carved).

    The loader builds on a train split; with a model's labels as the vocabulary, the audited split's files can stand
    in as "train" and be read back under that name. Returns the options to load and the split name to read.
    """
    files = list(spec.data_files or [])
    if spec.dataset is not None and Path(spec.dataset).is_file():
        files, spec = [spec.dataset], dataclasses.replace(spec, dataset=None)
    if files and all("=" not in entry for entry in files):
        files = [f"{spec.split}={entry}" for entry in files]  # plain files are the split to use
    split = spec.split
    if files and not any(entry.startswith("train=") for entry in files):
        files = [f"train={entry.partition('=')[2]}" for entry in files if entry.startswith(f"{split}=")]
        if not files:
            raise ValueError(f"split={split!r} is not among the data files {spec.data_files}; pass --split.")
        split = "train"
    if files:
        spec = dataclasses.replace(spec, data_files=files, validation_fraction=0.0)
    return spec, split


def load_split(spec: DataSpec, label_names: Sequence[str] | None) -> tuple[MultiLabelData, str]:
    """Load the data of ``spec`` so that its split ``spec.split`` can be read, with the vocabulary ``label_names``
    (a model's labels; None: built from the data's train split).

    Returns ``(loaded, name)``: ``loaded.dataset[name]`` is the split (a split given as local files is read as
    ``train``, see :func:`_split_as_train`). Raises ValueError when the data has no such split.
    """
    options, name = _split_as_train(spec)
    loaded = load_data(options, seed=spec.seed, label_names=label_names)
    if name not in loaded.dataset:
        raise ValueError(f"split={name!r} is not a split of {spec.source!r}; it has {sorted(loaded.dataset)}.")
    return loaded, name
