"""Quality metrics of any multi-label checkpoint on any split: ``hf-dft evaluate CHECKPOINT --dataset ...``.

The split is read with the same data options as ``hf-dft train`` (:class:`~hf_dft_head.data.DataArguments`), its
labels aligned to the model's by name, and the model's logits scored with
:func:`hf_dft_head.metrics.quality.multilabel_quality_report` (P@k, R@k, F1@k, nDCG@k, micro/macro-F1, exact match).
"""

from __future__ import annotations

import os
from typing import Any

from . import audit
from .checkpoints import load_checkpoint
from .data import DataSpec
from .sigmoid_head import model_label_names


def evaluate_checkpoint(
    checkpoint: str | os.PathLike,
    spec: DataSpec,
    *,
    batch_size: int = 32,
    max_length: int = 128,
    assume_multi_label: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """The quality metrics of ``checkpoint`` on the split ``spec`` names (a :class:`~hf_dft_head.data.DataSpec`).

    Returns a JSON-ready dict: ``model``, ``dataset`` (the spec, the number of examples, the data's fingerprint and
    the labels the model does not know) and ``metrics`` (at ``audit.QUALITY_KS``, threshold 0.5).
    """
    model, tokenizer = load_checkpoint(checkpoint, assume_multi_label=assume_multi_label)
    labels = model_label_names(model.config, int(model.config.num_labels))
    split = audit.load_audit_split(spec, labels)
    predictions = audit.predict_label_sets(
        model,
        tokenizer,
        split.texts,
        gold_sets=split.label_sets,
        batch_size=batch_size,
        max_length=max_length,
        progress=progress,
    )
    return {
        "model": {"path": str(checkpoint), "architecture": type(model).__name__, "num_labels": len(labels)},
        "dataset": split.describe(),
        "metrics": predictions.quality,
    }
