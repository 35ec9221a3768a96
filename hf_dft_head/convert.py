"""Turn an existing multi-label `AutoModelForSequenceClassification` checkpoint into a DFT model."""

from __future__ import annotations

import os

from transformers import AutoModelForSequenceClassification, PreTrainedModel

from .modeling import DFTForMultiLabelClassification


def convert_sequence_classifier(
    model_or_path: str | os.PathLike | PreTrainedModel, *, k: int = 10, slack_dims: int = 0, **config_kwargs
) -> DFTForMultiLabelClassification:
    """A DFT classifier that keeps a stock classifier's encoder and labels and gets a new head.

    Args:
        model_or_path: a loaded `...ForSequenceClassification` model, or a path / Hub id of one.
        k, slack_dims, **config_kwargs: the new head (see `DFTConfig`).

    The stock model must be a sigmoid multi-label classifier (``problem_type`` multi-label, or
    unset with more than one label); its classifier weights are dropped: the DFT head is trained anew.
    """
    if isinstance(model_or_path, PreTrainedModel):
        stock = model_or_path
    else:
        stock = AutoModelForSequenceClassification.from_pretrained(model_or_path)
    problem_type = getattr(stock.config, "problem_type", None)
    if problem_type not in (None, "multi_label_classification"):
        raise ValueError(
            f"{type(stock).__name__} has problem_type={problem_type!r}: only sigmoid multi-label classifiers "
            "(problem_type='multi_label_classification') can be converted."
        )
    encoder = getattr(stock, stock.base_model_prefix, None)
    if encoder is None or encoder is stock:
        raise ValueError(
            f"Cannot find the encoder of {type(stock).__name__} (base_model_prefix={stock.base_model_prefix!r})."
        )
    return DFTForMultiLabelClassification.from_encoder(
        encoder, id2label=dict(stock.config.id2label), k=k, slack_dims=slack_dims, **config_kwargs
    )
