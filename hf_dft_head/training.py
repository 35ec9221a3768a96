"""Training a multi-label classifier with Accelerate: one script for one CPU, several GPUs or several machines.

The loop trains any head (``dft``, ``bottleneck``, ``dense``) the same way, so comparisons are like
for like. With ``freeze_encoder`` the pooled encoder features are computed once and cached
(:mod:`hf_dft_head.encoder_features`), and only the head is trained on them (the paper's BioASQ setting, and the
practical mode on CPU). The options and their checks are :mod:`hf_dft_head.training_args`; the data, its
statistics and loaders :mod:`hf_dft_head.training_data`; this module is the run itself: :func:`train` in named
steps, evaluation, the saved state, the final evaluation and the summary.

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
touched. ``--resume`` continues the run with the arguments in its ``training_args.json`` (what may differ:
:data:`~hf_dft_head.training_args.RESUME_MAY_DIFFER`); the values it replaced are logged to ``log.jsonl``.
"""

from __future__ import annotations

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
from typing import Any

import accelerate.optimizer
import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, DistributedType, set_seed
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import AutoModel, AutoTokenizer, get_linear_schedule_with_warmup

from . import data as data_lib
from .checkpoints import STATE_DIR
from .console import progress_enabled
from .encoder_features import FEATURES_COLUMN, bundled_encoder_path, check_encoder, compute_encoder_features
from .gale import dft_width
from .layers import DFTHead
from .metrics.quality import QualityAccumulator, label_ids_by_row, threshold_predictions, top_k_label_ids
from .modeling import DFTForMultiLabelClassification
from .training_args import (
    RUN_MARKER,
    DFTTrainingArguments,
    check_arguments,
    check_output_dir,
    check_resume_vocabulary,
)
from .training_data import (
    INDEX_COLUMN,
    build_dataloaders,
    capacity_note,
    circle_order,
    feature_loaders,
    label_statistics,
    load_training_data,
    positive_weights,
    report_data,
    with_example_index,
)
from .training_state import TRAINER_STATE, TrainingProgress, json_default, save_training_state, write_json_atomic

logger = logging.getLogger(__name__)

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


def evaluate(
    model: torch.nn.Module, dataloader: DataLoader, accelerator: Accelerator, args: DFTTrainingArguments
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
    predicted = label_ids_by_row(threshold_predictions(scores, threshold=threshold))
    gold = label_ids_by_row(labels.cpu().numpy())
    return list(zip(index.cpu().tolist(), top, predicted, gold))


def head_multiply_adds(head: nn.Module, batch_size: int) -> int:
    """Multiply-adds of the head's forward over one batch, roughly: every parameter is used once per example (the
    dense and bottleneck heads are exactly their matrices), plus ``n (2k + 1)`` for a DFT head's fixed matrix."""
    per_example = sum(p.numel() for p in head.parameters())
    if isinstance(head, DFTHead):
        per_example += head.dft.num_labels * dft_width(head.dft.k)
    return per_example * batch_size


def _param_digest(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for _, parameter in sorted(model.named_parameters()):
        if parameter.requires_grad:
            digest.update(parameter.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def train(args: DFTTrainingArguments) -> dict[str, Any]:
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


def _train(args: DFTTrainingArguments) -> dict[str, Any]:
    """:func:`train` (which restores the torch thread count this may change), step by step."""
    accelerator, changed_args, encoder_path = _start(args)
    loaded, positions, statistics = _load_data(args, accelerator)
    model, tokenizer = _build_model(args, encoder_path, loaded.vocabulary, positions)
    if args.head == "dft" and accelerator.is_main_process:
        note = capacity_note(loaded.num_labels, args.k, args.slack_dims, model.config.hidden_size)
        if note:
            print(note)
    _replace_old_run(args, accelerator, loaded, statistics)
    legacy_loop = os.environ.get(ROW_LOADER_ENV) == "1"
    loaders = _make_loaders(args, accelerator, model, tokenizer, loaded, legacy_loop)
    loop = _prepare_loop(args, accelerator, model, tokenizer, loaders, positive_weights(loaded, args), legacy_loop)
    loop.begin(changed_args)
    loop.run()
    return loop.finish()


def _start(args: DFTTrainingArguments) -> tuple[Accelerator, dict[str, dict[str, Any]], str]:
    """Check the arguments, the output folder and the encoder (nothing is written), then start Accelerate and seed.

    Returns the accelerator, the arguments a ``--resume`` changes (:func:`check_output_dir`) and the encoder's path.
    """
    check_arguments(args)
    changed_args = check_output_dir(args)
    encoder_path = args.encoder or bundled_encoder_path()
    check_encoder(encoder_path, args.encoder_layers)
    accelerator = Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=args.mixed_precision,
        log_with=args.report_to or None,
        project_dir=str(Path(args.output_dir)),
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
    return accelerator, changed_args, encoder_path


def _load_data(
    args: DFTTrainingArguments, accelerator: Accelerator
) -> tuple[data_lib.MultiLabelData, np.ndarray | None, dict[str, dict[str, Any]]]:
    """The run's data (the main process first, so the others find it cached), its circle order ``(n,)`` or
    ``None``, and its label statistics (printed by the main process)."""
    with accelerator.main_process_first():
        loaded = load_training_data(args)
    if args.resume:
        check_resume_vocabulary(Path(args.output_dir), loaded.vocabulary)
    positions = circle_order(loaded, args)
    statistics = label_statistics(loaded, positions, args)
    if accelerator.is_main_process:
        report_data(loaded, statistics, args)
    return loaded, positions, statistics


def _build_model(
    args: DFTTrainingArguments,
    encoder_path: str,
    vocabulary: data_lib.LabelVocabulary,
    positions: np.ndarray | None,
) -> tuple[DFTForMultiLabelClassification, Any]:
    """The encoder's tokenizer and the classifier: the encoder (cut to ``encoder_layers``) with the chosen head over
    ``vocabulary``, its labels at ``positions`` ``(n,)`` on the DFT circle (``None``: label-id order)."""
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
    return model, tokenizer


def _replace_old_run(
    args: DFTTrainingArguments,
    accelerator: Accelerator,
    loaded: data_lib.MultiLabelData,
    statistics: dict[str, dict[str, Any]],
) -> None:
    """Empty the output folder under ``--overwrite`` and write the run's label statistics and arguments."""
    output_dir = Path(args.output_dir)
    # Only now that the data and the model are known to be good is the old run replaced: bad input
    # fails above and leaves an existing output folder exactly as it was.
    if accelerator.is_main_process:
        if args.overwrite and output_dir.exists():
            for child in output_dir.iterdir():
                shutil.rmtree(child) if child.is_dir() else child.unlink()
        output_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(output_dir / "label_statistics.json", {"summary": loaded.summary, "statistics": statistics})
        write_json_atomic(output_dir / RUN_MARKER, args.to_json())
    accelerator.wait_for_everyone()


def _make_loaders(
    args: DFTTrainingArguments,
    accelerator: Accelerator,
    model: DFTForMultiLabelClassification,
    tokenizer: Any,
    loaded: data_lib.MultiLabelData,
    legacy_loop: bool,
) -> dict[str, DataLoader]:
    """The loader of every split: over cached encoder features with ``freeze_encoder`` (in memory, or read row by
    row with ``legacy_loop``), else over tokenised text. A small frozen-encoder head then trains on one thread."""
    vocabulary = loaded.vocabulary
    if not args.freeze_encoder:
        with accelerator.main_process_first():
            splits = data_lib.tokenize_dataset(loaded.dataset, tokenizer, max_length=args.max_length)
        collator = with_example_index(data_lib.MultiLabelCollator(vocabulary.num_labels, tokenizer))
        columns = [*tokenizer.model_input_names, data_lib.LABELS_COLUMN, INDEX_COLUMN]
        return build_dataloaders(splits, collator, args, columns, None)
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
        return build_dataloaders(splits, collator, args, columns, "numpy")
    loaders = feature_loaders(splits, vocabulary.num_labels, args)
    # After the features (the encoder, if it ran, wants every thread): see ONE_THREAD_MAX_MULTIPLY_ADDS.
    if head_multiply_adds(model.head, args.batch_size) <= ONE_THREAD_MAX_MULTIPLY_ADDS:
        torch.set_num_threads(1)
    return loaders


def _prepare_loop(
    args: DFTTrainingArguments,
    accelerator: Accelerator,
    model: DFTForMultiLabelClassification,
    tokenizer: Any,
    loaders: dict[str, DataLoader],
    pos_weight: torch.Tensor | None,
    legacy_loop: bool,
) -> _TrainingLoop:
    """The optimiser (AdamW, the head's and the encoder's learning rates) and the linear schedule, everything
    prepared by Accelerate, in a :class:`_TrainingLoop`."""
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
    return _TrainingLoop(
        args=args,
        accelerator=accelerator,
        model=model,
        tokenizer=tokenizer,
        optimizer=optimizer,
        scheduler=scheduler,
        train_loader=train_loader,
        validation_loader=validation_loader,
        test_loader=test_loader,
        clip_parameters=clip_parameters,
        pos_weight=pos_weight,
        legacy_loop=legacy_loop,
        total_steps=total_steps,
    )


@dataclass
class _TrainingLoop:
    """The prepared objects of a run and its :class:`TrainingProgress`: :meth:`begin` resumes (or starts) it,
    :meth:`run` trains and evaluates until the last epoch or early stopping, :meth:`finish` evaluates the best
    checkpoint and writes the results."""

    args: DFTTrainingArguments
    accelerator: Accelerator
    model: nn.Module
    tokenizer: Any
    optimizer: torch.optim.Optimizer
    scheduler: Any
    train_loader: DataLoader
    validation_loader: DataLoader
    test_loader: DataLoader | None
    clip_parameters: list[nn.Parameter]
    pos_weight: torch.Tensor | None
    legacy_loop: bool
    total_steps: int
    state: TrainingProgress = field(default_factory=TrainingProgress)
    start: float = 0.0
    progress: Any = None
    debug_kill_step: int = 0
    debug_digest_file: str | None = None

    @property
    def output_dir(self) -> Path:
        return Path(self.args.output_dir)

    @property
    def is_main(self) -> bool:
        return self.accelerator.is_main_process

    def begin(self, changed_args: dict[str, dict[str, Any]]) -> None:
        """Load the saved state under ``--resume``, start the trackers, the clock and the progress bar."""
        args, accelerator = self.args, self.accelerator
        if args.resume:
            accelerator.load_state(str(self.output_dir / STATE_DIR))
            self.state = TrainingProgress.load(self.output_dir / STATE_DIR / TRAINER_STATE)
            accelerator.print(f"Resuming from epoch {self.state.epoch}, step {self.state.global_step}.")
        if args.report_to:
            accelerator.init_trackers("hf_dft_head", config={k: v for k, v in args.to_json().items() if v is not None})
        if args.resume and changed_args and self.is_main:
            logger.warning("Resuming with changed arguments: %s", changed_args)
        self.debug_kill_step = int(os.environ.get("HF_DFT_DEBUG_KILL_AFTER_STEP", "0"))
        self.debug_digest_file = os.environ.get("HF_DFT_DEBUG_PARAM_DIGESTS")
        self.start = time.time()
        self.progress = tqdm(
            total=self.total_steps,
            initial=self.state.global_step,
            disable=not (self.is_main and progress_enabled()),
            desc="Training",
            unit="step",
        )
        if args.resume:
            # training_args.json now holds the new values; the log keeps what they replaced.
            self.log({"resumed": True, "changed_args": changed_args})

    def log(self, record: dict[str, Any]) -> None:
        """Append ``record`` (with the step, epoch and seconds so far) to ``log.jsonl``; numbers to the trackers."""
        state = self.state
        record = {"step": state.global_step, "epoch": state.epoch, "time": round(time.time() - self.start, 3), **record}
        if self.is_main:
            with (self.output_dir / "log.jsonl").open("a") as handle:
                handle.write(json.dumps(record, default=json_default) + "\n")
        if self.args.report_to:
            self.accelerator.log(
                {k: v for k, v in record.items() if isinstance(v, (int, float))}, step=state.global_step
            )

    def evaluate_and_keep_best(self) -> bool:
        """Evaluate on validation, save the best checkpoint and the state; True when early stopping fires."""
        args, accelerator, state = self.args, self.accelerator, self.state
        metrics = evaluate(self.model, self.validation_loader, accelerator, args)
        if args.metric_for_best not in metrics:
            raise ValueError(f"--metric-for-best {args.metric_for_best!r} is not one of {sorted(metrics)}.")
        value = metrics[args.metric_for_best]
        improved = state.best_metric is None or value > state.best_metric
        if improved:
            state.best_metric, state.best_step = value, state.global_step
            state.evaluations_without_improvement = 0
            accelerator.wait_for_everyone()
            if self.is_main:
                accelerator.unwrap_model(self.model).save_pretrained(self.output_dir)
                self.tokenizer.save_pretrained(self.output_dir)
        else:
            state.evaluations_without_improvement += 1
        state.history.append({"step": state.global_step, "epoch": state.epoch, **metrics})
        self.log({"eval": metrics, "best": improved})
        self.progress.set_postfix({args.metric_for_best: f"{value:.4f}"})
        save_training_state(accelerator, self.output_dir, state)
        patience = args.early_stopping_patience
        return patience is not None and state.evaluations_without_improvement >= patience

    def run(self) -> None:
        """Train epoch after epoch, evaluating after each (or every ``eval_steps``), until the last or until early
        stopping; the state is saved after each epoch."""
        state = self.state
        self.model.train()
        stop = False
        while state.epoch < self.args.epochs and not stop:
            if self._train_epoch():
                break
            state.epoch += 1
            state.step_in_epoch = 0
            if not self.args.eval_steps:
                stop = self.evaluate_and_keep_best()
            else:
                save_training_state(self.accelerator, self.output_dir, state)
        self.progress.close()

    def _train_epoch(self) -> bool:
        """One epoch (its rest, when resuming mid-epoch); True when early stopping fired in it."""
        args, accelerator, model, optimizer, scheduler = (
            self.args,
            self.accelerator,
            self.model,
            self.optimizer,
            self.scheduler,
        )
        self.train_loader.set_epoch(self.state.epoch)
        # Resuming mid-epoch: the seeded sampler gives the same order, skip what was already trained on.
        skip = self.state.step_in_epoch * args.gradient_accumulation_steps
        batches = accelerator.skip_first_batches(self.train_loader, skip) if skip else self.train_loader
        for batch in batches:
            batch.pop(INDEX_COLUMN, None)
            with accelerator.accumulate(model):
                # The model's own loss: with a large DFT head it is chunked and never makes the (B, n) logits.
                loss = model(**batch, pos_weight=self.pos_weight).loss
                accelerator.backward(loss)
                if accelerator.sync_gradients and args.max_grad_norm:
                    clipped = model.parameters() if self.legacy_loop else self.clip_parameters
                    accelerator.clip_grad_norm_(clipped, args.max_grad_norm)
                optimizer.step()
                if accelerator.sync_gradients:
                    scheduler.step()
                optimizer.zero_grad()
            if accelerator.sync_gradients and self._after_optimiser_step(loss):
                return True
        return False

    def _after_optimiser_step(self, loss: torch.Tensor) -> bool:
        """Count the step, log, evaluate or save when due (and the test hooks); True when early stopping fires."""
        args, accelerator, state = self.args, self.accelerator, self.state
        state.global_step += 1
        state.step_in_epoch += 1
        self.progress.update(1)
        if self.debug_digest_file:
            with open(f"{self.debug_digest_file}.rank{accelerator.process_index}", "a") as handle:
                handle.write(f"{state.global_step} {_param_digest(accelerator.unwrap_model(self.model))}\n")
        if state.global_step % args.logging_steps == 0:
            self.log({"loss": accelerator.gather(loss.detach()).mean().item(), "lr": self.scheduler.get_last_lr()[0]})
        stop = False
        if args.eval_steps and state.global_step % args.eval_steps == 0:
            stop = self.evaluate_and_keep_best()
        elif args.save_steps and state.global_step % args.save_steps == 0:
            save_training_state(accelerator, self.output_dir, state)
        if self.debug_kill_step and state.global_step >= self.debug_kill_step:
            os.kill(os.getpid(), signal.SIGKILL)  # test hook: a hard kill, as a crashed machine would
        return stop

    def finish(self) -> dict[str, Any]:
        """Evaluate the best checkpoint on validation and test, write ``eval_results.json``, print the summary."""
        args, accelerator = self.args, self.accelerator
        results = _final_evaluation(
            accelerator, self.output_dir, self.test_loader, self.validation_loader, args, self.state
        )
        results["train_seconds"] = round(time.time() - self.start, 2)
        if self.is_main:
            write_json_atomic(self.output_dir / "eval_results.json", results)
            self.log({"final": results})
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
    args: DFTTrainingArguments,
    state: TrainingProgress,
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


def training_summary(results: dict[str, Any], args: DFTTrainingArguments) -> str:
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
