"""Per-label decision thresholds tuned on a validation split: ``hf-dft tune-thresholds CHECKPOINT``.

A multi-label classifier predicts label ``i`` when its logit ``z_i`` exceeds a threshold ``t_i``; 0 (sigmoid 0.5)
for every label is rarely the best choice for F1, so the paper's code and LibMultiLabel tune one threshold per label
on validation data. Two ways to apply them:

* **per label** (default): ``t`` goes into ``config.logit_thresholds``, which ``model.predict``, the
  ``multi-label-classification`` pipeline, ``hf-dft predict``/``evaluate``/``audit`` apply. The model then predicts
  ``z - t > 0``: a bias ``-t`` that, unless it is uniform, lies outside a DFT head's column space, so the
  sign-change rule no longer decides which sets the model outputs; the audit decides every set by LP. (Finite
  thresholds still keep every set the guarantee names: the head is linear in its input, and ``W (s x) - t`` has
  the signs of ``W x`` for large ``s``; see ``docs/thresholds.md``.)
* **keep the guarantee** (``--keep-guarantee``): ``t`` is projected onto the column space of the head's last matrix
  ``W`` (least squares, ``t ~ W a``) and ``a`` is folded into the bias of the head's input (``x = P h + c`` becomes
  ``P h + (c - a)``), so the logits become ``z - W a`` and every region of the head is kept: no thresholds in the
  config (plain ``sigmoid > 0.5`` in any consumer gives the tuned decisions), the weights change, the rule still
  decides, and the checkpoint certifies as before. A uniform offset (``G``'s constant column) is then re-tuned on
  the projected logits.

The tuning itself (exact, vectorised, streaming) is :mod:`hf_dft_head.threshold_tuning`; this module runs it on a
checkpoint's validation split and writes the tuned checkpoint.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import audit
from .audit_report import AUDIT_FIGURE_NAME
from .checkpoints import CERTIFICATE_NAME, bound_files, load_checkpoint
from .data import DataSpec
from .output_checks import OutputLocationError, check_writable_folder, write_json
from .prediction import decision_thresholds
from .sigmoid_head import find_sigmoid_head, model_label_names
from .threshold_tuning import (
    FALLBACKS,
    METRICS,
    LogitBatches,
    check_choice,
    column_space_shift_stream,
    f1_of_thresholds_stream,
    tune_thresholds_stream,
)
from .version import __version__

THRESHOLDS_RECORD = "thresholds.json"
#: ``hf-dft tune-thresholds`` keeps the validation logits in memory (one forward pass instead of one per pass of the
#: tuner) while examples x labels is at most this (64 MB of float32); beyond it each pass runs the model again.
LOGIT_CACHE_ELEMENTS = 1 << 24
#: Splits the tuner refuses: numbers measured on the data the thresholds were fitted to say nothing.
REFUSED_SPLITS = ("test",)
# Weight files save_pretrained writes; keep-guarantee replaces exactly these.
_WEIGHT_SUFFIXES = (".safetensors", ".bin")


# ----------------------------------------------------------------------------------------------------------------
# Keeping the guarantee: the bias of the head's input space, where the column-space shift goes
# ----------------------------------------------------------------------------------------------------------------


def input_bias(model) -> torch.nn.Parameter:
    """The bias of the head's input space: ``c`` of a DFT head's ``x = P h + c``, ``b1`` of a bottleneck's middle
    layer. A dense head (and a stock classifier) reads the encoder's features directly and has none."""
    kind = getattr(model.config, "head_kind", None)
    if kind == "dft":
        return model.head.bias
    if kind == "bottleneck":
        return model.head.down.bias
    raise ValueError(
        f"--keep-guarantee folds the thresholds into the bias of the head's input space; a "
        f"{'dense head' if kind == 'dense' else 'stock classifier'} reads the encoder's features directly and has no "
        "such bias (nor a guarantee to keep). Tune without --keep-guarantee: the thresholds go into config.json."
    )


# ----------------------------------------------------------------------------------------------------------------
# The command: tune on a checkpoint's validation split, write a tuned checkpoint
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class ThresholdOptions:
    """Options of ``hf-dft tune-thresholds`` (the data options are :class:`~hf_dft_head.data.DataArguments`)."""

    metric: str = field(default="micro_f1", metadata={"help": f"what the thresholds maximise: {', '.join(METRICS)}"})
    keep_guarantee: bool = field(
        default=False,
        metadata={
            "help": "project the thresholds onto the head's column space and fold them into the bias of its input "
            "(DFT, bottleneck): the weights change, config.json gets no thresholds and the guarantee is kept"
        },
    )
    fallback: str = field(
        default="global",
        metadata={
            "help": "threshold of labels with too few positives in validation: global (the single threshold that "
            "maximises micro-F1 over all labels) or zero (logit 0, probability 0.5)"
        },
    )
    min_positives: int = field(
        default=1, metadata={"help": "positive validation examples a label needs to get a threshold of its own"}
    )
    output_dir: str | None = field(
        default=None,
        metadata={
            "help": "write the tuned checkpoint here, a copy without certificate (default: CHECKPOINT itself, refused "
            "when it holds a certificate)"
        },
    )
    seed: int = field(
        default=42, metadata={"help": "seed that carves the validation split when the data has none (as in training)"}
    )
    batch_size: int = field(default=32, metadata={"help": "batch size for the validation logits"})
    max_length: int = field(default=128, metadata={"help": "tokenizer max length"})
    assume_multi_label: bool = field(
        default=False, metadata={"help": "treat a checkpoint without problem_type as a sigmoid multi-label model"}
    )

    def __post_init__(self) -> None:
        check_choice("--metric", self.metric, METRICS)
        check_choice("--fallback", self.fallback, FALLBACKS)
        for name in ("min_positives", "batch_size", "max_length"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}.")


def _checkpoint_batches(model, tokenizer, split, options: ThresholdOptions, progress: bool) -> LogitBatches:
    """The validation split's logits as a stream: from memory after the first pass while examples x labels is at
    most ``LOGIT_CACHE_ELEMENTS``, else the model runs again at each pass (eval mode: the same logits)."""
    gold = [list(s) for s in split.label_sets]
    keep = len(gold) * int(model.config.num_labels) <= LOGIT_CACHE_ELEMENTS
    cache: list[tuple[np.ndarray, list]] = []

    def batches() -> Iterator[tuple[np.ndarray, list]]:
        if keep and cache:
            yield from cache
            return
        start = 0
        for logits in audit.logit_batches(
            model,
            tokenizer,
            split.texts,
            batch_size=options.batch_size,
            max_length=options.max_length,
            progress=progress,
        ):
            batch = (logits, gold[start : start + len(logits)])
            start += len(logits)
            if keep:
                cache.append(batch)
            yield batch

    return batches


def _output_folder(checkpoint: Path, output_dir: str | None) -> Path:
    """Where the tuned checkpoint goes; refuses what would lose or invalidate something already written."""
    if not checkpoint.is_dir() or not (checkpoint / "config.json").is_file():
        raise ValueError(f"{checkpoint} is not a checkpoint folder (no config.json): pass a local checkpoint folder.")
    if output_dir is None or Path(output_dir).resolve() == checkpoint.resolve():
        if (checkpoint / CERTIFICATE_NAME).is_file():
            raise ValueError(
                f"{checkpoint} holds a certificate, which tuning in place would invalidate (config.json or the weights "
                "change): pass --output-dir NEW_FOLDER to write a tuned copy, then certify that."
            )
        check_writable_folder(checkpoint, option="CHECKPOINT")
        return checkpoint
    output = Path(output_dir)
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise OutputLocationError(f"--output-dir {output} exists and is not an empty folder: choose a new folder.")
    check_writable_folder(output, option="--output-dir")
    return output


def tune_checkpoint(
    checkpoint: str | os.PathLike,
    spec: DataSpec,
    options: ThresholdOptions | None = None,
    *,
    progress: bool = True,
) -> dict[str, Any]:
    """Tune the thresholds of ``checkpoint`` on the split ``spec`` names (a :class:`~hf_dft_head.data.DataSpec`,
    normally ``split="validation"``), write the tuned checkpoint and return its record (``thresholds.json``).

    Per label (default): ``config.json`` gets ``logit_thresholds``. ``keep_guarantee``: the head's input bias
    changes instead (module docstring). ``options.output_dir``: a copy of the checkpoint's bound files without its
    certificate and figure; default: in place (refused when the checkpoint holds a certificate). Raises
    ``ValueError`` for bad input (a test split, no such split, a dense head with ``keep_guarantee``...) before
    anything is written.
    """
    options = options or ThresholdOptions()
    checkpoint = Path(checkpoint)
    split_name = spec.split
    if split_name in REFUSED_SPLITS:
        raise ValueError(
            f"Thresholds are tuned on a validation split, never on split={split_name!r}: test numbers measured on the "
            "data the thresholds were fitted to would say nothing."
        )
    output = _output_folder(checkpoint, options.output_dir)
    model, tokenizer = load_checkpoint(checkpoint, assume_multi_label=options.assume_multi_label)
    if options.keep_guarantee:
        input_bias(model)  # a head without one fails before the logits are computed
    labels = model_label_names(model.config, int(model.config.num_labels))
    split = _validation_split(spec, labels)
    num_labels = len(labels)
    batches = _checkpoint_batches(model, tokenizer, split, options, progress)
    tuned = tune_thresholds_stream(
        batches, num_labels, options.metric, fallback=options.fallback, min_positives=options.min_positives
    )
    before = decision_thresholds(model.config)[0]
    record: dict[str, Any] = {
        "made_by": f"hf-dft tune-thresholds (hf-dft-head {__version__})",
        "checkpoint": str(checkpoint.resolve()),
        "metric": options.metric,
        "mode": "keep_guarantee" if options.keep_guarantee else "per_label",
        "data": split.describe(),
        "min_positives": options.min_positives,
        "fallback": {
            "policy": options.fallback,
            "threshold": tuned.fallback_threshold,
            "labels": [labels[i] for i in tuned.fallback_labels],
        },
        "validation": dict(
            zip(("before", "per_label"), f1_of_thresholds_stream(batches, num_labels, [before, tuned.thresholds]))
        ),
        "tuned_logit_thresholds": tuned.thresholds.tolist(),
        "dinkelbach_rounds": tuned.rounds,
    }
    if options.keep_guarantee:
        _fold_into_input_bias(model, tuned.thresholds, batches, options, record)
    else:
        model.config.logit_thresholds = tuned.thresholds.tolist()
    _write_checkpoint(checkpoint, output, model, record, weights=options.keep_guarantee)
    record["output_dir"] = str(output)
    return record


def _validation_split(spec: DataSpec, labels: list[str]) -> audit.AuditSplit:
    """The split ``spec`` names, with the model's ``labels``; a missing split says how to give or carve one."""
    try:
        return audit.load_audit_split(spec, labels)
    except ValueError as error:
        if f"split={spec.split!r}" not in str(error):
            raise
        raise ValueError(
            f"{error} tune-thresholds needs a validation split: give --data-files validation=PATH, or let it be "
            "carved from train (--validation-fraction > 0 with the training run's --seed)."
        ) from None


def _fold_into_input_bias(
    model, thresholds: np.ndarray, batches: LogitBatches, options: ThresholdOptions, record: dict[str, Any]
) -> None:
    """``--keep-guarantee``: move the head's input bias by the column-space shift realising ``thresholds`` ``(n,)``
    (no thresholds in the config), and add the projected validation figures and the shift to ``record``."""
    bias = input_bias(model)
    weight = find_sigmoid_head(model, assume_multi_label=options.assume_multi_label).weight
    shift, offset = column_space_shift_stream(weight, thresholds, batches, options.metric)
    realised = weight @ shift
    with torch.no_grad():
        bias -= torch.as_tensor(shift, dtype=bias.dtype, device=bias.device)
    model.config.logit_thresholds = None
    record["validation"]["projected"] = f1_of_thresholds_stream(batches, thresholds.size, [realised])[0]
    record["projection"] = {
        "input_bias_shift": shift.tolist(),
        "uniform_offset": offset,
        "residual_rms": float(np.sqrt(np.mean((realised - thresholds) ** 2))),
        "note": "the head's input bias moved by -input_bias_shift: its logits are z - W a, with W the head's "
        "last matrix; the validation figures are computed from the validation logits in float64",
    }


def _write_checkpoint(checkpoint: Path, output: Path, model, record: dict[str, Any], *, weights: bool) -> None:
    """Write the tuned files (config.json, the weights when they changed, ``thresholds.json``) into ``output``.

    Everything is written into a staging folder next to ``output`` first; a copy gets the checkpoint's other bound
    files (not its figure, which belongs to its certificate), and is renamed into place whole. In place, each
    changed file replaces the old one with ``os.replace``.
    """
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.tuning-", dir=output.parent))
    try:
        fresh = staging / "fresh"
        (model.save_pretrained if weights else model.config.save_pretrained)(fresh)
        changed = ["config.json"]
        if weights:
            written = sorted(p.name for p in fresh.iterdir() if p.name.endswith(_WEIGHT_SUFFIXES))
            present = sorted(p.name for p in checkpoint.iterdir() if p.name.endswith(_WEIGHT_SUFFIXES))
            if written != present:
                raise ValueError(
                    f"{checkpoint} stores its weights as {present}, and save_pretrained writes {written}: re-save the "
                    "checkpoint with save_pretrained first, so that the tuned weights replace the old ones."
                )
            changed += written + [p.name for p in fresh.iterdir() if p.name.endswith(".index.json")]
        write_json(record, fresh / THRESHOLDS_RECORD)
        changed.append(THRESHOLDS_RECORD)
        if output == checkpoint:
            for name in changed:
                os.replace(fresh / name, output / name)
            return
        copy = staging / "copy"
        for name in bound_files(checkpoint).files:
            if name in changed or name == AUDIT_FIGURE_NAME:
                continue
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(checkpoint / name, copy / name)
        copy.mkdir(exist_ok=True)
        for name in changed:
            os.replace(fresh / name, copy / name)
        if output.exists():
            output.rmdir()  # checked empty before any work
        os.replace(copy, output)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _data_name(record: dict[str, Any]) -> str:
    return DataSpec.from_record(record).source


def format_record(record: dict[str, Any]) -> str:
    """A few lines: the validation metrics before and after, the fallback labels, where the checkpoint is."""
    validation = record["validation"]
    lines = [
        f"Tuned {record['metric']} thresholds on {_data_name(record['data'])} split={record['data']['split']} "
        f"({record['data']['examples']} examples)"
    ]
    for name, metrics in validation.items():
        lines.append(f"  {name:<10} micro-F1 {metrics['micro_f1']:.4f}  macro-F1 {metrics['macro_f1']:.4f}")
    fallback = record["fallback"]
    if fallback["labels"]:
        shown = ", ".join(fallback["labels"][:5]) + (", ..." if len(fallback["labels"]) > 5 else "")
        lines.append(
            f"  {len(fallback['labels'])} labels with fewer than {record['min_positives']} positives kept the "
            f"{fallback['policy']} threshold {fallback['threshold']:.4g}: {shown}"
        )
    if record["mode"] == "keep_guarantee":
        lines.append(
            f"  thresholds folded into the head's input bias (residual rms {record['projection']['residual_rms']:.3g}"
            "); config.json has no logit_thresholds: the head's guarantee is unchanged"
        )
    else:
        lines.append(
            "  per-label logit_thresholds written to config.json (applied by model.predict, the package's pipeline and "
            "hf-dft predict/evaluate/audit); certify again: the audit now decides every set by LP"
        )
    lines.append(f"Checkpoint: {record['output_dir']}")
    return "\n".join(lines)


__all__ = [
    "THRESHOLDS_RECORD",
    "ThresholdOptions",
    "format_record",
    "input_bias",
    "tune_checkpoint",
]
