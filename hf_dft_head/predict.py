"""``hf-dft predict``: label sets of texts given on the command line or in a file, written as JSON lines.

The prediction itself is :func:`hf_dft_head.prediction.predict_label_sets` (also ``model.predict``); this module adds
what the command needs around it: loading a checkpoint folder or Hub repo, reading texts from ``.jsonl``, ``.csv`` or
``.txt`` files, and writing one JSON object per text::

    {"text": "...", "labels": ["floods", "aid_related"], "scores": [0.91, 0.62], "within_guarantee": true}

Every check of the input (the texts, the options, the output path) runs before the model is loaded, and the output
file is replaced only once every prediction has been computed, so bad input loses nothing already written.
"""

from __future__ import annotations

import csv
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import torch

from .checkpoints import CheckpointError, load_checkpoint, looks_like_repo_id
from .prediction import LabelSetPrediction, check_top_k, decision_thresholds, predict_label_sets

INPUT_FORMATS = (".jsonl", ".csv", ".txt")


@dataclass
class PredictArguments:
    """Options of ``hf-dft predict`` (the texts and the checkpoint are positional arguments)."""

    input: str | None = field(
        default=None,
        metadata={
            "help": "read the texts from this file instead of the command line: .jsonl (one JSON object per line), "
            ".csv (with a header row) or .txt (one text per line; blank lines are skipped)"
        },
    )
    output: str | None = field(
        default=None, metadata={"help": "write JSON lines to this file (default: print them to stdout)"}
    )
    text_column: str = field(default="text", metadata={"help": "the text field of a .jsonl or .csv input"})
    threshold: float | None = field(
        default=None,
        metadata={
            "help": "probability threshold for every label, in [0, 1] (default: the checkpoint's per-label "
            "logit_thresholds if it has them, else 0.5)"
        },
    )
    top_k: int | None = field(
        default=None,
        metadata={
            "help": "at most this many labels per text: the highest-scoring of those above the threshold "
            "(with --threshold 0: exactly the top_k best labels)"
        },
    )
    batch_size: int = field(default=32, metadata={"help": "texts per forward pass"})
    max_length: int | None = field(
        default=None, metadata={"help": "truncate texts to this many tokens (default: the tokenizer's limit)"}
    )
    device: str | None = field(
        default=None, metadata={"help": "torch device, e.g. cpu, cuda, cuda:1 (default: cuda if available, else cpu)"}
    )
    assume_multi_label: bool = field(
        default=False, metadata={"help": "treat a checkpoint without problem_type as a sigmoid multi-label model"}
    )


# ----------------------------------------------------------------------------------------------------------------
# Input
# ----------------------------------------------------------------------------------------------------------------


def read_texts(path: str | os.PathLike, text_column: str = "text") -> list[str]:
    """The texts of a ``.jsonl``, ``.csv`` or ``.txt`` file, in file order.

    Raises:
        ValueError: the file is missing or empty, of another format, lacks ``text_column``, or holds a line or row
            that is not a text (the message names the line or row and the fix).
    """
    path = Path(path)
    formats = ", ".join(INPUT_FORMATS)
    if not path.is_file():
        raise ValueError(f"--input {path}: no such file. Give an existing {formats} file.")
    suffix = path.suffix.lower()
    if suffix not in INPUT_FORMATS:
        raise ValueError(f"--input {path}: unsupported file type {suffix or '(none)'!r}; use {formats}.")
    try:
        content = path.read_text(encoding="utf-8-sig")  # -sig: a byte-order mark is not part of the first text
    except UnicodeDecodeError as error:
        raise ValueError(f"--input {path}: not UTF-8 text ({error.reason} at byte {error.start}).") from None
    if suffix == ".txt":
        texts = [line for line in content.splitlines() if line.strip()]
    elif suffix == ".jsonl":
        texts = _jsonl_texts(path, content, text_column)
    else:
        texts = _csv_texts(path, content, text_column)
    if not texts:
        raise ValueError(f"--input {path}: the file holds no texts.")
    return texts


def _jsonl_texts(path: Path, content: str, text_column: str) -> list[str]:
    texts = []
    for number, line in enumerate(content.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"--input {path}, line {number}: not valid JSON ({error.msg}).") from None
        if not isinstance(record, dict):
            raise ValueError(
                f"--input {path}, line {number}: expected a JSON object with a {text_column!r} field, got "
                f"{type(record).__name__}."
            )
        if text_column not in record:
            raise ValueError(
                f"--input {path}, line {number}: no {text_column!r} field (fields: {', '.join(map(str, record))}). "
                "Name the text field with --text-column."
            )
        if not isinstance(record[text_column], str):
            raise ValueError(
                f"--input {path}, line {number}: {text_column!r} is a {type(record[text_column]).__name__}, not a "
                "string."
            )
        texts.append(record[text_column])
    return texts


def _csv_texts(path: Path, content: str, text_column: str) -> list[str]:
    reader = csv.DictReader(content.splitlines())
    columns = reader.fieldnames or []
    if text_column not in columns:
        raise ValueError(
            f"--input {path}: no {text_column!r} column (columns: {', '.join(columns) or 'none'}). Name the text "
            "column with --text-column."
        )
    texts = []
    for row in reader:
        text = row[text_column]
        if text is None:  # a row shorter than the header
            raise ValueError(f"--input {path}, line {reader.line_num}: the row has no {text_column!r} value.")
        texts.append(text)
    return texts


# ----------------------------------------------------------------------------------------------------------------
# Model and output
# ----------------------------------------------------------------------------------------------------------------


def resolve_device(device: str | None) -> torch.device:
    """``device`` as a torch device; ``None``: CUDA when available, else CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise ValueError(f"--device {device!r} is not a torch device; use cpu, cuda or cuda:N.") from None
    try:
        torch.empty(0, device=resolved)  # the device exists here, not only as a name
    except (RuntimeError, AssertionError) as error:
        raise ValueError(f"--device {device} is not available on this machine ({error}); use --device cpu.") from None
    return resolved


def load_for_prediction(checkpoint: str, *, device: str | None = None, assume_multi_label: bool = False):
    """``(model, tokenizer)`` of a checkpoint folder or Hub repo id, in eval mode on ``device``.

    Raises:
        ValueError: not a folder nor a repo id, not a multi-label model, or no tokenizer in the checkpoint.
    """
    if not Path(checkpoint).is_dir() and not looks_like_repo_id(checkpoint):
        raise ValueError(f"{checkpoint} is not a checkpoint folder (and not a Hub repo id of the form namespace/name).")
    target = resolve_device(device)
    model, tokenizer = load_checkpoint(checkpoint, assume_multi_label=assume_multi_label)
    if tokenizer is None:
        raise CheckpointError(
            f"{checkpoint} has no tokenizer files; save the tokenizer next to the model "
            "(tokenizer.save_pretrained(folder)) or call predict_label_sets with a tokenizer in Python."
        )
    return model.to(target).eval(), tokenizer


def prediction_records(texts: Sequence[str], predictions: Sequence[LabelSetPrediction]) -> list[dict]:
    """One JSON-ready ``{"text", "labels", "scores", "within_guarantee"}`` dict per text."""
    return [{"text": text, **prediction.to_dict()} for text, prediction in zip(texts, predictions)]


def write_json_lines(records: Sequence[dict], output: str | os.PathLike) -> None:
    """Write ``records`` as JSON lines, replacing ``output`` only when all of them are written (no partial file)."""
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    # A plain open() (not tempfile's 0600 file): the result gets the usual permissions.
    partial = output.with_name(f".{output.name}.{os.getpid()}.partial")
    try:
        with open(partial, "w", encoding="utf-8") as handle:
            for record in records:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        os.replace(partial, output)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def _check_output(output: str | None, input_path: str | None) -> None:
    if output is None:
        return
    path = Path(output)
    if path.is_dir():
        raise ValueError(f"--output {output} is a folder; give a file name, e.g. {path / 'predictions.jsonl'}.")
    if input_path is not None and path.resolve() == Path(input_path).resolve():
        raise ValueError(f"--output {output} is the input file; write the predictions to another file.")
    existing = next((parent for parent in [path.parent, *path.parent.parents] if parent.exists()), None)
    if existing is not None and not existing.is_dir():
        raise ValueError(f"--output {output}: {existing} is a file, not a folder.")


def run_predict(
    checkpoint: str,
    texts: Sequence[str] | None,
    options: PredictArguments,
    *,
    progress: bool = True,
    stream: TextIO | None = None,
) -> list[LabelSetPrediction]:
    """What ``hf-dft predict CHECKPOINT [TEXT ...]`` does; returns the predictions in input order.

    Texts come from ``texts`` or from ``options.input`` (exactly one of them). JSON lines go to ``options.output``
    (replaced atomically; a one-line summary goes to ``stream``) or, without it, to ``stream`` (default stdout).

    Raises:
        ValueError: bad input (no texts or both sources, unreadable file, bad option values, unusable checkpoint),
            raised before anything is written.
    """
    stream = sys.stdout if stream is None else stream
    texts = list(texts or [])
    if texts and options.input is not None:
        raise ValueError("Give the texts either on the command line or with --input, not both.")
    if options.input is not None:
        texts = read_texts(options.input, options.text_column)
    elif not texts:
        raise ValueError(
            'No texts: give them after the checkpoint (hf-dft predict CHECKPOINT "a text" ...) or --input.'
        )
    check_top_k(options.top_k)
    if options.threshold is not None and not 0.0 <= options.threshold <= 1.0:
        raise ValueError(f"--threshold is a probability in [0, 1], got {options.threshold}.")
    if options.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {options.batch_size}.")
    if options.max_length is not None and options.max_length < 2:
        raise ValueError(f"--max-length must be >= 2 tokens, got {options.max_length}.")
    _check_output(options.output, options.input)

    model, tokenizer = load_for_prediction(
        checkpoint, device=options.device, assume_multi_label=options.assume_multi_label
    )
    decision_thresholds(model.config, options.threshold)  # the checkpoint's own thresholds are valid
    predictions = predict_label_sets(
        model,
        texts,
        tokenizer,
        threshold=options.threshold,
        top_k=options.top_k,
        batch_size=options.batch_size,
        max_length=options.max_length,
        progress=None if progress else False,
        assume_multi_label=options.assume_multi_label,
    )
    records = prediction_records(texts, predictions)
    if options.output is None:
        for record in records:
            stream.write(json.dumps(record, ensure_ascii=False) + "\n")
    else:
        write_json_lines(records, options.output)
        print(f"Wrote {len(records)} predictions to {options.output}", file=stream)
    return predictions


__all__ = [
    "INPUT_FORMATS",
    "PredictArguments",
    "load_for_prediction",
    "prediction_records",
    "read_texts",
    "resolve_device",
    "run_predict",
    "write_json_lines",
]
