"""The options of a training run (:class:`DFTTrainingArguments`) and every check made on them before anything is
loaded or written: values, the output folder, and what a ``--resume`` may change.

``--resume`` continues the run with the arguments in its ``training_args.json``: only :data:`RESUME_MAY_DIFFER`
(output folder, logging, reporting, data-loader workers) may differ; any other difference is refused, with the
differing arguments listed, unless ``--allow-changed-args`` is given (the training loop then logs the values it
replaced to ``log.jsonl``). A resume whose data gives other labels is always refused.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from . import data as data_lib
from .checkpoints import STATE_DIR
from .configuration import DFT_PATH_CHOICES, HEAD_KINDS, POOLINGS
from .metrics.quality import multilabel_quality_report
from .output_checks import check_removable_tree, check_writable_folder
from .training_state import TRAINER_STATE

#: The run's arguments, in its output folder (also what ``certify`` reads the data specification from).
RUN_MARKER = data_lib.TRAINING_ARGS_NAME
# Arguments that may differ between a run and its --resume: they change how a run is driven or reported, never
# a number it computes. Any other difference (learning rate, epochs, k, data, seed, batch sizes, ...) would make
# the resumed run a different experiment under the same name, so it needs --allow-changed-args.
RESUME_MAY_DIFFER = (
    "output_dir",
    "resume",
    "overwrite",
    "allow_changed_args",
    "report_to",
    "logging_steps",
    "num_workers",
)
LABEL_ORDER_METHODS = ("cooccurrence", "frequency", "name")


def _option(default: Any, help_text: str, **more: Any) -> Any:
    """A dataclass field with a default and a help text (the CLI shows both)."""
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"help": help_text, **more})
    return field(default=default, metadata={"help": help_text, **more})


@dataclass(kw_only=True)
class DFTTrainingArguments(data_lib.DataArguments):
    """Everything a run needs: the data options of :class:`~hf_dft_head.data.DataArguments` and these; the CLI
    flags are the names with dashes."""

    output_dir: str = field(metadata={"help": "folder for the checkpoint, metrics, logs and the training state"})
    encoder: str | None = _option(
        None, "encoder: a saved model folder or a Hub id (default: the bundled all-MiniLM-L6-v2)"
    )
    encoder_layers: int | None = _option(None, "keep only the encoder's first N layers (fast experiments)")
    head: Literal[HEAD_KINDS] = _option(
        "dft", "output head: dft, bottleneck (d -> r -> n) or dense (the usual sigmoid classifier)"
    )
    k: int = _option(
        10,
        "DFT head: every label set of at most k labels is guaranteed outputtable; the head decides in 2k+1 "
        "dimensions, so a larger k also adds capacity (thousands of labels: README, 'Choosing k at many labels')",
    )
    slack_dims: int = _option(0, "DFT head: trainable slack columns next to the fixed DFT matrix (more capacity)")
    label_order: Literal[LABEL_ORDER_METHODS] = _option(
        "cooccurrence",
        "DFT head: where labels sit on the circle: cooccurrence (labels that occur together in train sit together, "
        "so real label sets are few arcs: measured best), frequency, or name (vocabulary order)",
    )
    pos_weight: str = _option(
        "none",
        "BCE weight of each label's positives: none, auto (negatives / positives in train, clipped to "
        "[1, --pos-weight-max]: rare labels count more), or a JSON file ({label: weight} or a list of n weights)",
    )
    pos_weight_max: float = _option(
        5.0, "upper clip of --pos-weight auto (measured on kaomoji: 5 helps macro-F1, 50 hurts every metric)"
    )
    bottleneck_dim: int = _option(32, "bottleneck head: the width r of its middle layer")
    pooling: Literal["mean", "cls"] = _option(
        "mean", "encoder features: mean (over non-padding tokens) or cls (first token)"
    )
    dropout: float | None = _option(
        None, "dropout on the pooled features before the head (default: 0 with --freeze-encoder, else 0.1)"
    )
    dft_path: Literal[DFT_PATH_CHOICES] = _option("auto", "how G x is computed: auto, fft or matmul")
    chunked_loss: Literal["auto", "yes", "no"] = _option(
        "auto",
        "DFT head: compute the training loss block by block over the labels, never making the (batch, n) logits "
        "(same loss to float rounding; measured at n = 1M: 0.6x the time, a hundredth of the step memory): auto "
        "(when n > 8192, where it was measured faster), yes or no",
    )
    freeze_encoder: bool = _option(
        False, "train the head only, on encoder features computed once and cached (the practical mode on CPU)"
    )
    epochs: int | None = _option(None, "training epochs (default: 30 with --freeze-encoder, else 5)")
    batch_size: int | None = _option(
        None, "training batch size per process (default: 128 with --freeze-encoder, else 32)"
    )
    eval_batch_size: int = _option(256, "evaluation batch size per process")
    learning_rate: float | None = _option(
        None, "learning rate of the head (AdamW, linear decay; default: 0.1 with --freeze-encoder, else 1e-3)"
    )
    encoder_learning_rate: float = _option(2e-5, "learning rate of the encoder when it is fine-tuned")
    weight_decay: float = _option(0.0, "AdamW weight decay")
    warmup_ratio: float = _option(0.0, "share of the steps with a linear warm-up")
    gradient_accumulation_steps: int = _option(1, "batches accumulated per optimiser step")
    max_grad_norm: float = _option(1.0, "gradient clipping norm (0: none)")
    mixed_precision: Literal["no", "fp16", "bf16", "fp8"] = _option(
        "no", "no, fp16, bf16 or fp8 (Accelerate; bf16/fp16 need a GPU or a recent CPU)"
    )
    max_length: int = _option(128, "tokenizer max length")
    eval_steps: int | None = _option(None, "evaluate every N optimiser steps (default: every epoch)")
    save_steps: int | None = _option(None, "also save the training state every N steps, for --resume")
    metric_for_best: str = _option("f1@5", "validation metric that picks the best checkpoint")
    early_stopping_patience: int | None = _option(None, "stop after N evaluations without improvement")
    ks: list[int] = _option([1, 3, 5], "cut-offs of the @k metrics (P@k, R@k, F1@k, nDCG@k)")
    threshold: float = _option(0.5, "probability threshold of micro/macro-F1 and exact match")
    max_train_samples: int | None = _option(None, "use only the first N train examples")
    max_eval_samples: int | None = _option(None, "use only the first N validation and test examples")
    feature_batch_size: int = _option(128, "batch size when computing the frozen encoder's features")
    seed: int = _option(42, "random seed (initialisation, shuffling, dropout, label order search)")
    resume: bool = _option(False, "continue the run in --output-dir from its saved training state")
    overwrite: bool = _option(False, "replace the run in --output-dir (only once the new data and model have loaded)")
    report_to: list[str] | None = _option(None, "experiment trackers for Accelerate (e.g. tensorboard wandb)")
    logging_steps: int = _option(20, "log the loss every N optimiser steps")
    num_workers: int = _option(0, "DataLoader worker processes")
    allow_changed_args: bool = _option(
        False,
        "with --resume: continue although arguments differ from the run's training_args.json (the differences are "
        "logged to log.jsonl); without it such a resume is refused",
    )

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict of the arguments."""
        return dataclasses.asdict(self)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def metric_names(args: DFTTrainingArguments) -> list[str]:
    """The names :func:`evaluate` reports for these ``ks`` (raises ValueError on bad ``ks`` / ``threshold``)."""
    width = max(max(args.ks, default=1), 1)
    scores, targets = np.zeros((1, width)), np.ones((1, width))
    report = multilabel_quality_report(scores, targets, ks=tuple(args.ks), threshold=args.threshold)
    return sorted([*report, "examples", "unique_examples"])


#: Defaults of the options left unset (``None``), by training mode. Head-only training on cached features is a
#: convex-ish problem of a few thousand parameters: measured on frozen MiniLM features (benchmarks/
#: pure_head_quality.py and compare_heads.py, README "Heads compared"), a large step, no dropout and more epochs
#: help every head, the pure DFT head most (kaomoji k=10, co-occurrence order: F1@5 26.4 -> 36.4). Fine-tuning the
#: encoder keeps the usual transformer settings (not re-measured here).
MODE_DEFAULTS: dict[str, dict[str, Any]] = {
    "frozen_encoder": {"learning_rate": 0.1, "dropout": 0.0, "epochs": 30, "batch_size": 128},
    "fine_tuning": {"learning_rate": 1e-3, "dropout": 0.1, "epochs": 5, "batch_size": 32},
}


def fill_mode_defaults(args: DFTTrainingArguments) -> DFTTrainingArguments:
    """Set every option of :data:`MODE_DEFAULTS` that is ``None`` to its default for the run's mode (in place;
    ``training_args.json`` then records the values used)."""
    defaults = MODE_DEFAULTS["frozen_encoder" if args.freeze_encoder else "fine_tuning"]
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


def check_arguments(args: DFTTrainingArguments) -> None:
    """Refuse arguments that cannot work, before anything is loaded or written (after
    :func:`fill_mode_defaults`)."""
    fill_mode_defaults(args)
    if args.head not in HEAD_KINDS:
        raise ValueError(f"--head must be one of {', '.join(HEAD_KINDS)}, got {args.head!r}.")
    at_least_one = ("epochs", "batch_size", "eval_batch_size", "gradient_accumulation_steps", "max_length", "k")
    at_least_one += ("bottleneck_dim", "logging_steps", "feature_batch_size")
    for name in at_least_one:
        if getattr(args, name) < 1:
            raise ValueError(f"{_flag(name)} must be >= 1, got {getattr(args, name)}.")
    # None means "not set"; 0 is not a way to say that (it would silently mean "never" or "no examples").
    for name in ("encoder_layers", "eval_steps", "save_steps", "early_stopping_patience"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise ValueError(f"{_flag(name)} must be >= 1 (or left out), got {getattr(args, name)}.")
    for name in ("max_train_samples", "max_eval_samples"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise ValueError(
                f"{_flag(name)} must be >= 1 (or left out to use every example), got {getattr(args, name)}."
            )
    for name in ("slack_dims", "num_workers"):
        if getattr(args, name) < 0:
            raise ValueError(f"{_flag(name)} must be >= 0, got {getattr(args, name)}.")
    if not (math.isfinite(args.learning_rate) and args.learning_rate > 0):
        raise ValueError(f"--learning-rate must be a number > 0, got {args.learning_rate}.")
    for name in ("encoder_learning_rate", "weight_decay", "max_grad_norm"):
        if not (math.isfinite(getattr(args, name)) and getattr(args, name) >= 0):
            raise ValueError(f"{_flag(name)} must be a number >= 0, got {getattr(args, name)}.")
    for name in ("dropout", "warmup_ratio"):
        if not 0 <= getattr(args, name) < 1:
            raise ValueError(f"{_flag(name)} must be in [0, 1), got {getattr(args, name)}.")
    if args.pooling not in POOLINGS:
        raise ValueError(f"--pooling must be one of {', '.join(POOLINGS)}, got {args.pooling!r}.")
    if args.dft_path not in DFT_PATH_CHOICES:
        raise ValueError(f"--dft-path must be one of {', '.join(DFT_PATH_CHOICES)}, got {args.dft_path!r}.")
    if args.chunked_loss not in ("auto", "yes", "no"):
        raise ValueError(f"--chunked-loss must be auto, yes or no, got {args.chunked_loss!r}.")
    args.check()
    if args.pos_weight not in ("none", "auto") and not Path(args.pos_weight).is_file():
        raise ValueError(f"--pos-weight must be none, auto or a JSON file, got {args.pos_weight!r} (no such file).")
    if not (math.isfinite(args.pos_weight_max) and args.pos_weight_max >= 1):
        raise ValueError(f"--pos-weight-max must be a number >= 1, got {args.pos_weight_max}.")
    if args.label_order not in LABEL_ORDER_METHODS:
        raise ValueError(f"--label-order must be one of {', '.join(LABEL_ORDER_METHODS)}, got {args.label_order!r}.")
    try:
        names = metric_names(args)
    except ValueError as error:
        raise ValueError(f"--ks / --threshold: {error}") from None
    if args.metric_for_best not in names:
        raise ValueError(
            f"--metric-for-best {args.metric_for_best!r} is not reported with --ks {' '.join(map(str, args.ks))}; "
            f"choose one of {names} (an @k metric needs k in --ks)."
        )
    if args.resume and args.overwrite:
        raise ValueError("--resume and --overwrite contradict each other: choose one.")
    if args.allow_changed_args and not args.resume:
        raise ValueError("--allow-changed-args only applies with --resume.")
    if args.mixed_precision not in ("no", "fp16", "bf16", "fp8"):
        raise ValueError(f"--mixed-precision must be no, fp16, bf16 or fp8, got {args.mixed_precision!r}.")


def check_output_dir(args: DFTTrainingArguments) -> dict[str, dict[str, Any]]:
    """Refuse an output folder that cannot be written, or that holds another run ``resume``/``overwrite`` do not
    cover; returns the arguments a ``--resume`` changes (``{name: {"run": old, "now": new}}``, else ``{}``).

    Nothing is deleted or written here; ``--overwrite`` empties the folder only once the data and the model have
    loaded. A ``--resume`` whose arguments differ from the run's ``training_args.json`` (other than
    :data:`RESUME_MAY_DIFFER`) is refused unless ``allow_changed_args``.
    """
    out = Path(args.output_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--output-dir {out} exists and is not a folder: choose another --output-dir.")
    # Before any long work: a read-only folder found at the first save would waste the data loading and training.
    check_writable_folder(out, option="--output-dir")
    has_run = out.is_dir() and any(out.iterdir())
    if args.resume:
        if not (out / STATE_DIR / TRAINER_STATE).is_file():
            raise ValueError(
                f"--resume: {out} holds no saved training state ({STATE_DIR}/{TRAINER_STATE}); "
                "start a new run without --resume."
            )
        read_json_file(out / STATE_DIR / TRAINER_STATE, "--resume")
        return _check_resume_arguments(args, out)
    if has_run and not args.overwrite:
        raise ValueError(
            f"--output-dir {out} is not empty (it holds another run or other files). Use --resume to continue "
            "that run, --overwrite to replace it, or choose another folder."
        )
    if has_run:
        check_removable_tree(out, option="--output-dir")
    return {}


def read_json_file(path: Path, option: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(
            f"{option}: cannot read {path} ({error}); the run's files are damaged: start a new run in another "
            "--output-dir (or --overwrite this one)."
        ) from None


def _check_resume_arguments(args: DFTTrainingArguments, out: Path) -> dict[str, dict[str, Any]]:
    """Compare ``args`` with the run's recorded arguments; refuse differences unless ``allow_changed_args``."""
    marker = out / RUN_MARKER
    if not marker.is_file():
        if args.allow_changed_args:
            return {}
        raise ValueError(
            f"--resume: {out} has no {RUN_MARKER}, so the arguments of the run cannot be checked. Pass "
            "--allow-changed-args to resume anyway, or start a new run."
        )
    recorded = read_json_file(marker, "--resume")
    if not isinstance(recorded, dict):
        raise ValueError(f"--resume: {marker} does not hold the run's arguments; start a new run.")
    # Compare as JSON (tuples become lists, 1e-3 == 0.001); a field the run did not record counts at its default.
    now = json.loads(json.dumps(args.to_json(), default=str))
    defaults = {
        f.name: f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
        for f in dataclasses.fields(DFTTrainingArguments)
    }
    changes = {}
    for name, value in now.items():
        if name in ("resume", "allow_changed_args"):  # what makes this a resume, not a change of the run
            continue
        before = recorded.get(name, defaults.get(name, value))
        if before != value:
            changes[name] = {"run": before, "now": value}
    refused = {name: change for name, change in changes.items() if name not in RESUME_MAY_DIFFER}
    if refused and not args.allow_changed_args:
        listed = "; ".join(f"{_flag(name)}: run {c['run']!r}, now {c['now']!r}" for name, c in refused.items())
        raise ValueError(
            f"--resume: these arguments differ from the run in {out} ({RUN_MARKER}): {listed}. Resume with the "
            "run's values, pass --allow-changed-args to continue with the new ones (the change is logged in "
            f"log.jsonl), or start a new run in another --output-dir. Only {', '.join(map(_flag, RESUME_MAY_DIFFER))} "
            "may differ freely."
        )
    return changes


def check_resume_vocabulary(output_dir: Path, vocabulary: data_lib.LabelVocabulary) -> None:
    """Refuse a ``--resume`` whose data gives other labels than the run's saved checkpoint (the data changed)."""
    config_path = output_dir / "config.json"
    if not config_path.is_file():  # killed before the first evaluation saved a checkpoint: the state decides
        return
    id2label = (read_json_file(config_path, "--resume") or {}).get("id2label") or {}
    saved = [str(id2label[key]) for key in sorted(id2label, key=int)]
    if saved != list(vocabulary.labels):
        only_run = sorted(set(saved) - set(vocabulary.labels))[:5]
        only_now = sorted(set(vocabulary.labels) - set(saved))[:5]
        raise ValueError(
            f"--resume: the data now gives {len(vocabulary)} labels but the run in {output_dir} was trained on "
            f"{len(saved)} (only in the run: {only_run}; only in the data now: {only_now}; or another order): the "
            "data changed since the run started. Resume with the run's data, or start a new run."
        )
