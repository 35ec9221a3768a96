"""Tokenisation and batching: id-list rows -> padded ``(B, L)`` model inputs and a ``(B, n)`` multi-hot target."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import datasets
import numpy as np
import torch

from ..metrics.quality import multi_hot_from_label_ids
from .formats import LABELS_COLUMN, TEXT_COLUMN
from .loading import MultiLabelData


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


class MultiLabelCollator:
    """Batch builder for ``torch.utils.data.DataLoader(collate_fn=...)``.

    Pads the tokenizer fields of the examples (``input_ids``, ``attention_mask``, ``token_type_ids``, ...: whatever
    ``tokenizer.model_input_names`` lists) with ``tokenizer.pad`` to the longest row (or ``max_length`` /
    ``pad_to_multiple_of``), and turns each example's label-id list (``label_column``) into a multi-hot tensor
    ``labels`` of shape ``(B, num_labels)`` (float32 unless ``dtype`` is given). Other string fields (``text``) are
    dropped. Without a tokenizer (pre-computed features), every numeric field is stacked with ``torch.as_tensor``.
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
        dtype: torch.dtype | None = None,
    ) -> None:
        if isinstance(num_labels, bool) or not isinstance(num_labels, (int, np.integer)) or num_labels < 1:
            raise ValueError(f"num_labels must be a positive int (the vocabulary size), got {num_labels!r}.")
        self.num_labels = int(num_labels)
        self.tokenizer = tokenizer
        self.padding = padding
        self.max_length = max_length
        self.pad_to_multiple_of = pad_to_multiple_of
        self.label_column = label_column
        self.dtype = torch.float32 if dtype is None else dtype

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """``features``: B examples (dicts) -> ``{input fields: (B, L) tensors, "labels": (B, num_labels)}``."""
        if not features:
            raise ValueError("MultiLabelCollator: got an empty batch.")
        missing = [i for i, f in enumerate(features) if self.label_column not in f]
        if missing:
            raise ValueError(
                f"MultiLabelCollator: examples {missing[:10]} have no {self.label_column!r} field; their keys are "
                f"{sorted(features[missing[0]])}."
            )
        try:
            multi_hot = multi_hot_from_label_ids([f[self.label_column] for f in features], self.num_labels)
        except ValueError as error:  # name the batch: "label_ids row 1" alone does not say where
            raise ValueError(f"MultiLabelCollator: the batch's {error}") from None
        labels = torch.from_numpy(multi_hot).to(self.dtype)
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
