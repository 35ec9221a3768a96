"""Test-set quality of per-label decision thresholds on frozen-encoder checkpoints (docs/thresholds.md).

    python benchmarks/threshold_quality.py CHECKPOINT [CHECKPOINT ...] [--output results.md]

For each checkpoint trained with ``hf-dft train --freeze-encoder``: the full validation and test splits of the data
it was trained on (``training_args.json``), their pooled encoder features from the ``datasets`` cache training
filled (computed now where it did not: a ``--max-eval-samples`` run cached only part of them), the head's logits,
and then, tuned on validation and measured on test (micro- and macro-F1, :mod:`hf_dft_head.metrics.quality`):

* ``default``: logit 0 (sigmoid 0.5) for every label;
* ``uniform``: the best single threshold for micro-F1 (``best_uniform_threshold``);
* ``per-label micro`` / ``per-label macro``: ``tune_thresholds`` (what ``hf-dft tune-thresholds`` stores);
* ``kept ... (LS)``: their least-squares projection onto the head's column space (``W a``), no offset re-tuned;
* ``kept ...``: the projection with the uniform offset re-tuned (what ``--keep-guarantee`` writes).

The same functions as the command, on the same logits up to batching (features go through the head in one batch).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import datasets
import numpy as np
import torch

import hf_dft_head  # noqa: F401  (registers the model with the Auto classes)
from hf_dft_head import encoder_features, training_args, training_data
from hf_dft_head.checkpoints import load_checkpoint
from hf_dft_head.metrics.quality import macro_f1, micro_f1, multi_hot_from_label_ids
from hf_dft_head.threshold_tuning import best_uniform_threshold, column_space_shift, tune_thresholds

SPLITS = ("validation", "test")


def split_logits(checkpoint: Path) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], object]:
    """``({split: (logits (N, n) float64, targets (N, n) bool)}, model)`` for the full validation and test splits."""
    recorded = json.loads((checkpoint / "training_args.json").read_text())
    if not recorded.get("freeze_encoder"):
        raise SystemExit(f"{checkpoint} was not trained with --freeze-encoder: this benchmark reads cached features.")
    fields = {f.name for f in training_args.DFTTrainingArguments.__dataclass_fields__.values()}
    args = training_args.DFTTrainingArguments(**{key: value for key, value in recorded.items() if key in fields})
    full = training_args.DFTTrainingArguments(**{**vars(args), "max_train_samples": 1, "max_eval_samples": None})
    loaded = training_data.load_training_data(full)  # the same splits, fingerprints and index column as training
    model, tokenizer = load_checkpoint(checkpoint)
    if list(model.config.id2label.values()) != list(loaded.vocabulary.labels):
        raise SystemExit(f"{checkpoint}: the data's label vocabulary differs from the model's.")
    splits = datasets.DatasetDict({name: loaded.dataset[name] for name in SPLITS})
    features = encoder_features.compute_encoder_features(model, tokenizer, splits, max_length=args.max_length)
    out = {}
    for name in SPLITS:
        table = features[name].with_format("numpy")[encoder_features.FEATURES_COLUMN]
        with torch.no_grad():
            logits = model.head(torch.from_numpy(np.asarray(table[:]))).double().numpy()
        targets = multi_hot_from_label_ids(list(features[name]["labels"]), logits.shape[1]).astype(bool)
        out[name] = (logits, targets)
    return out, model


def measure(checkpoint: Path) -> list[dict]:
    start = time.time()
    splits, model = split_logits(checkpoint)
    print(f"{checkpoint}: logits in {time.time() - start:.0f} s", file=sys.stderr)
    val_logits, val_targets = splits["validation"]
    weight, _ = model.effective_head()
    n = val_logits.shape[1]
    variants = {"default": np.zeros(n), "uniform": np.full(n, best_uniform_threshold(val_logits, val_targets))}
    timings = {}
    for metric in ("micro_f1", "macro_f1"):
        started = time.time()
        tuned = tune_thresholds(val_logits, val_targets, metric)
        timings[metric] = time.time() - started
        short = metric.split("_")[0]
        variants[f"per-label {short}"] = tuned.thresholds
        shift, _ = column_space_shift(weight, tuned.thresholds, val_logits, val_targets, metric, retune_offset=False)
        variants[f"kept {short} (LS)"] = weight @ shift
        shift, _ = column_space_shift(weight, tuned.thresholds, val_logits, val_targets, metric)
        variants[f"kept {short}"] = weight @ shift
    rows = []
    for name, thresholds in variants.items():
        row = {"checkpoint": checkpoint.name, "variant": name}
        for split, (logits, targets) in splits.items():
            decisions = logits > thresholds
            row[f"{split} micro-F1"] = micro_f1(decisions, targets)
            row[f"{split} macro-F1"] = macro_f1(decisions, targets)
        rows.append(row)
    print(
        f"  tuning time: micro {timings['micro_f1']:.2f} s, macro {timings['macro_f1']:.2f} s "
        f"({val_logits.shape[0]} x {n})",
        file=sys.stderr,
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoints", nargs="+", type=Path)
    parser.add_argument("--output", type=Path, help="also write the table to this Markdown file")
    options = parser.parse_args()
    torch.set_num_threads(1)
    rows = [row for checkpoint in options.checkpoints for row in measure(checkpoint)]
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(f"{v:.4f}" if isinstance(v, float) else str(v) for v in row.values()) + " |")
    table = "\n".join(lines)
    print(table)
    if options.output:
        options.output.write_text(table + "\n")


if __name__ == "__main__":
    main()
