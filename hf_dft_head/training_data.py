"""The data of a training run: the splits with an example index, the label statistics, the DFT head's circle order,
the BCE positive weights, and the loaders over tokenised text or over cached encoder features.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
from torch.utils.data import DataLoader

from . import data as data_lib
from .encoder_features import FEATURES_COLUMN
from .feature_batches import InMemoryFeatures, whole_batch
from .gale import dft_width, largest_dft_k
from .label_order import label_order, order_statistics
from .training_args import DFTTrainingArguments, read_json_file

INDEX_COLUMN = "example_index"


def load_training_data(args: DFTTrainingArguments) -> data_lib.MultiLabelData:
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


def circle_order(loaded: data_lib.MultiLabelData, args: DFTTrainingArguments) -> np.ndarray | None:
    """The DFT head's circle positions ``(n,)`` from the train split's label sets (``None``: label-id order).

    ``name`` keeps the vocabulary's order; ``frequency`` and ``cooccurrence`` come from
    :func:`hf_dft_head.label_order.label_order`, deterministic given the data and ``seed`` (so ``--resume`` and
    every process of a distributed run compute the same order).
    """
    if args.head != "dft" or args.label_order == "name":
        return None
    train_sets = loaded.dataset["train"][data_lib.LABELS_COLUMN]
    return label_order(train_sets, loaded.num_labels, args.label_order, seed=args.seed)


def label_statistics(
    loaded: data_lib.MultiLabelData, positions: np.ndarray | None, args: DFTTrainingArguments
) -> dict[str, dict[str, Any]]:
    """Label-set statistics of every split (:func:`~hf_dft_head.data.label_set_statistics`) and, for a DFT head or
    a circle order ``positions`` ``(n,)``, the share of examples within the guarantee of ``k`` in that order."""
    statistics = data_lib.label_set_statistics(loaded, args.k)
    if positions is not None or args.head == "dft":
        guarantee = order_statistics(
            {name: split[data_lib.LABELS_COLUMN] for name, split in loaded.dataset.items()},
            positions if positions is not None else np.arange(loaded.vocabulary.num_labels),
            [args.k],
            num_labels=loaded.vocabulary.num_labels,
        )
        for name, figures in guarantee.items():
            statistics[name]["share_within_guarantee"] = figures[f"share_k{args.k}"]
            statistics[name]["mean_sign_changes"] = figures["mean_sign_changes"]
            statistics[name]["label_order"] = args.label_order
    return statistics


def positive_weights(loaded: data_lib.MultiLabelData, args: DFTTrainingArguments) -> torch.Tensor | None:
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
    recorded = read_json_file(path, "--pos-weight") if path.is_file() else None
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


def with_example_index(collator: Any) -> Any:
    """Wrap a collator so batches keep the ``example_index`` tensor ``(B,)`` it would drop."""

    def collate(features: list[dict[str, Any]]) -> dict[str, Any]:
        batch = collator(features)
        batch[INDEX_COLUMN] = torch.tensor([feature[INDEX_COLUMN] for feature in features])
        return batch

    return collate


def build_dataloaders(
    splits: datasets.DatasetDict, collator: Any, args: DFTTrainingArguments, columns: list[str], format_type: str | None
) -> dict[str, DataLoader]:
    loaders = {}
    for name, split in splits.items():
        split = split.with_format(format_type, columns=[c for c in columns if c in split.column_names])
        loaders[name] = _split_loader(name, split, collator, args)
    return loaders


def _split_loader(name: str, dataset: Any, collate_fn: Any, args: DFTTrainingArguments) -> DataLoader:
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


def feature_loaders(splits: datasets.DatasetDict, num_labels: int, args: DFTTrainingArguments) -> dict[str, DataLoader]:
    """Loaders over the cached features of every split, held in memory (:class:`InMemoryFeatures`).

    Built by the same :func:`_split_loader` as :func:`build_dataloaders` (batch sizes, shuffling of train only, the
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


#: Past this many labels per dimension of the DFT head's input (n / (2k + 1 + slack)), training prints a note on
#: capacity: measured with benchmarks/scale.py at 10,000 labels (README, "Choosing k at many labels").
CAPACITY_NOTE_LABELS_PER_DIMENSION = 100


def capacity_note(num_labels: int, k: int, slack_dims: int, hidden_size: int) -> str | None:
    """A note for a DFT head with very many labels per input dimension (``None`` at or below
    :data:`CAPACITY_NOTE_LABELS_PER_DIMENSION`): how many, what was measured, and the largest ``k`` the encoder
    allows (``2k + 1 + slack_dims <= hidden_size``)."""
    width = dft_width(k, slack_dims)
    per_dimension = num_labels / width
    if per_dimension <= CAPACITY_NOTE_LABELS_PER_DIMENSION:
        return None
    largest_k = largest_dft_k(hidden_size, slack_dims)
    advice = (
        f"a larger --k (up to {largest_k} with this encoder's {hidden_size} features) adds capacity and strengthens "
        "the guarantee"
        if largest_k > k
        else f"k = {k} is the largest this encoder allows; --slack-dims adds trainable columns"
    )
    return (
        f"Capacity: the DFT head decides {num_labels:,} labels in 2k + 1 + slack = {width} dimensions "
        f"({per_dimension:,.0f} labels per dimension). At 10,000 labels, one epoch on 5,000 examples gave test P@1 "
        f'0.7% with k = 10, 2.7% with k = 50 and 10.7% with k = 150 (README, "Choosing k at many labels"); {advice}.'
    )


def report_data(loaded: data_lib.MultiLabelData, statistics: dict[str, Any], args: DFTTrainingArguments) -> None:
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
