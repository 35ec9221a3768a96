"""A multi-label classifier over any `AutoModel` encoder with a DFT (or baseline) output head.

This file, ``configuration.py``, ``layers.py`` and ``gale.py`` are copied into every saved
checkpoint (remote code), so they import each other only as ``from .module import name``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from transformers import AutoModel, PreTrainedModel
from transformers.conversion_mapping import register_checkpoint_conversion_mapping
from transformers.core_model_loading import WeightRenaming
from transformers.modeling_outputs import SequenceClassifierOutput

from .configuration import DFTConfig
from .layers import CHUNKED_LOSS_BLOCK_SIZE, BottleneckHead, DenseHead, DFTHead, dft_bce_loss
from .prediction import LabelSetPrediction, predict_label_sets


def build_head(config) -> nn.Module:
    """The output head described by ``config``: maps ``(..., d)`` pooled features to ``(..., n)`` logits."""
    d, n, std = config.hidden_size, config.num_labels, config.initializer_range
    if config.head_kind == "dft":
        return DFTHead(
            d, n, config.k, config.slack_dims, path=config.dft_path, init_std=std, label_order=config.label_order
        )
    if config.head_kind == "bottleneck":
        return BottleneckHead(d, n, config.bottleneck_dim, init_std=std)
    return DenseHead(d, n, init_std=std)


def drop_pooler(encoder: nn.Module) -> nn.Module:
    """Remove a BERT/RoBERTa-style pooler, which a CLS/mean-pooling head never uses.

    An unused parameter breaks DDP's gradient reduction ("Expected to have finished reduction").
    """
    if getattr(encoder, "pooler", None) is not None:
        encoder.pooler = None
    return encoder


class DFTPreTrainedModel(PreTrainedModel):
    """Weight initialisation and loading glue shared by the DFT models."""

    config_class = DFTConfig
    base_model_prefix = "encoder"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    _keys_to_ignore_on_load_unexpected = [r"pooler\."]

    def _init_weights(self, module: nn.Module) -> None:
        # Heads own their initialisation (the DFT prior logit, zero slack). During `from_pretrained`
        # loaded parameters carry `_is_hf_initialized`; never overwrite those.
        if isinstance(module, (DFTHead, BottleneckHead, DenseHead)):
            if not any(getattr(p, "_is_hf_initialized", False) for p in module.parameters()):
                module.reset_parameters()
        else:
            super()._init_weights(module)


class DFTForMultiLabelClassification(DFTPreTrainedModel):
    """Encoder, pooling, dropout and a multi-label output head trained with BCE-with-logits.

    The DFT head provably can output every label set of at most ``config.k`` labels (in its
    input space; see ``argmax`` for checks and certificates).

    Shapes: ``input_ids`` ``(B, T)`` -> ``logits`` ``(B, n)``. Alternatively pass
    ``encoder_features`` ``(B, d)`` (pooled features computed once with a frozen encoder) to
    skip the encoder.
    """

    def __init__(self, config: DFTConfig, encoder: PreTrainedModel | None = None):
        super().__init__(config)
        config.check_head_sizes()
        if encoder is None:
            encoder = AutoModel.from_config(config.encoder)
        self.encoder = drop_pooler(encoder)
        self.dropout = nn.Dropout(config.classifier_dropout)
        # Named `classifier` because PEFT's task_type="SEQ_CLS" keeps modules of that name trainable and saves
        # them with the adapter; `head` is an alias. Checkpoint files keep the `head.*` names (HEAD_KEY_RENAMINGS).
        self.classifier = build_head(config)
        self.post_init()
        # Saved checkpoints carry this code; let `AutoModel` (not only the sequence-classification
        # Auto class registered below) load them with trust_remote_code=True.
        auto_map = dict(getattr(config, "auto_map", None) or {})
        auto_map.setdefault("AutoModel", f"modeling.{type(self).__name__}")
        config.auto_map = auto_map
        if config.freeze_encoder:
            self.freeze_encoder()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_encoder_pretrained(
        cls,
        encoder_name_or_path: str,
        *,
        num_labels: int | None = None,
        id2label: dict[int, str] | None = None,
        k: int = 10,
        slack_dims: int = 0,
        head_kind: str = "dft",
        encoder_kwargs: dict | None = None,
        **config_kwargs,
    ) -> DFTForMultiLabelClassification:
        """A new classifier over a pretrained encoder (a path or Hub id) with a freshly initialised head.

        Args:
            encoder_name_or_path: anything `AutoModel.from_pretrained` accepts.
            num_labels: ``n``; may be omitted when ``id2label`` is given.
            id2label: label names, ``{0: "name", ...}``, one per label.
            k, slack_dims, head_kind: see [`DFTConfig`].
            encoder_kwargs: passed to `AutoModel.from_pretrained` (e.g. ``num_hidden_layers``, ``revision``).
            **config_kwargs: other [`DFTConfig`] fields (``pooling``, ``bottleneck_dim``, ``freeze_encoder``, ...).
        """
        if num_labels is None and id2label is None:
            raise ValueError("Give num_labels or id2label: the head needs to know how many labels there are.")
        encoder = AutoModel.from_pretrained(encoder_name_or_path, **(encoder_kwargs or {}))
        return cls.from_encoder(
            encoder,
            num_labels=num_labels,
            id2label=id2label,
            k=k,
            slack_dims=slack_dims,
            head_kind=head_kind,
            **config_kwargs,
        )

    @classmethod
    def from_encoder(
        cls,
        encoder: PreTrainedModel,
        *,
        num_labels: int | None = None,
        id2label: dict[int, str] | None = None,
        **config_kwargs,
    ) -> DFTForMultiLabelClassification:
        """A new classifier over an encoder already in memory (its weights are kept, not copied)."""
        if num_labels is None and id2label is None:
            raise ValueError("Give num_labels or id2label: the head needs to know how many labels there are.")
        if id2label is not None:
            id2label = {int(i): str(name) for i, name in id2label.items()}
            if num_labels is None:
                num_labels = len(id2label)
        # A dict, not the live object: sharing it lets later changes (attention implementation) leak across.
        config = DFTConfig(encoder=encoder.config.to_dict(), num_labels=num_labels, id2label=id2label, **config_kwargs)
        config.check_head_sizes()
        model = cls(config, encoder=encoder)
        model.config.name_or_path = getattr(encoder.config, "name_or_path", "")
        return model

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        """``PreTrainedModel.from_pretrained``, then ``config.freeze_encoder`` applied again.

        Loading replaces every parameter with a new trainable ``nn.Parameter``, which undoes the freeze done in
        ``__init__``: without this a reloaded "frozen" model would be fine-tuned whole by ``Trainer``.
        """
        loaded = super().from_pretrained(*args, **kwargs)
        model = loaded[0] if isinstance(loaded, tuple) else loaded  # (model, info) with output_loading_info=True
        if getattr(model.config, "freeze_encoder", False):
            model.freeze_encoder()
        return loaded

    def freeze_encoder(self) -> None:
        """Stop gradients into the encoder: only the head (and dropout) train."""
        for parameter in self.encoder.parameters():
            parameter.requires_grad_(False)
        self.config.freeze_encoder = True

    # ------------------------------------------------------------------ forward
    def pool(self, last_hidden_state: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        """``(B, T, d)`` token states -> ``(B, d)`` pooled features (first token, or masked mean)."""
        if self.config.pooling == "cls":
            return last_hidden_state[:, 0]
        if attention_mask is None:
            return last_hidden_state.mean(dim=1)
        mask = attention_mask.unsqueeze(-1).to(last_hidden_state.dtype)  # (B, T, 1)
        return (last_hidden_state * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)

    def encode(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        **encoder_kwargs,
    ) -> torch.Tensor:
        """Pooled encoder features ``(B, d)``: what a frozen-encoder run computes once and caches."""
        if token_type_ids is not None:
            encoder_kwargs["token_type_ids"] = token_type_ids
        outputs = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **encoder_kwargs)
        return self.pool(outputs[0], attention_mask)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        encoder_features: torch.Tensor | None = None,
        pos_weight: torch.Tensor | None = None,
        **kwargs,
    ) -> SequenceClassifierOutput:
        """Logits ``(B, n)`` and, with ``labels`` (``(B, n)`` multi-hot, float or int), the BCE-with-logits loss
        (``pos_weight`` ``(n,)``: the weight of each label's positive term, as in torch's loss).

        Pass either tokenised inputs (``input_ids`` ``(B, T)``, ...) or ``encoder_features`` ``(B, d)``. With labels,
        gradients on and :meth:`uses_chunked_loss`, the loss is computed block by block without the logits and
        ``logits`` is ``None`` (call without labels, or under ``torch.no_grad()``, for logits).
        """
        hidden_states = attentions = None
        if encoder_features is None:
            if input_ids is None and kwargs.get("inputs_embeds") is None:
                raise ValueError("Pass input_ids (or inputs_embeds), or precomputed encoder_features of shape (B, d).")
            kwargs.pop("return_dict", None)
            if token_type_ids is not None:
                kwargs["token_type_ids"] = token_type_ids
            outputs = self.encoder(input_ids=input_ids, attention_mask=attention_mask, return_dict=True, **kwargs)
            features = self.pool(outputs.last_hidden_state, attention_mask)
            hidden_states, attentions = outputs.get("hidden_states"), outputs.get("attentions")
        else:
            if encoder_features.shape[-1] != self.config.hidden_size:
                raise ValueError(
                    f"encoder_features must have shape (batch, {self.config.hidden_size}), "
                    f"got {tuple(encoder_features.shape)}."
                )
            features = encoder_features.to(self.head_dtype)
        features = self.dropout(features)
        expected = (features.shape[0], self.config.num_labels)
        if labels is not None and labels.shape != expected:
            raise ValueError(
                f"labels must be multi-hot with shape (batch, num_labels) = {expected}, got {tuple(labels.shape)}. "
                "Convert label-id lists with hf_dft_head.data's collator."
            )
        if labels is not None and torch.is_grad_enabled() and self.uses_chunked_loss() and _is_binary(labels):
            rows, cols = labels.nonzero(as_tuple=True)
            loss = dft_bce_loss(self.head.project(features), self.head.dft, rows, cols, pos_weight)
            return SequenceClassifierOutput(loss=loss, logits=None, hidden_states=hidden_states, attentions=attentions)
        logits = self.head(features)
        loss = None
        if labels is not None:
            loss = nn.functional.binary_cross_entropy_with_logits(
                logits, labels.to(logits.dtype), pos_weight=None if pos_weight is None else pos_weight.to(logits.dtype)
            )
        return SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=hidden_states, attentions=attentions)

    def uses_chunked_loss(self) -> bool:
        """Whether a forward with labels and gradients on computes the loss block by block, without ``(B, n)`` logits:
        ``config.chunked_loss``, or when that is ``None`` a DFT head with more labels than one block of
        ``dft_bce_loss`` (where it was measured faster). Never for the dense and bottleneck heads."""
        if not isinstance(self.head, DFTHead):
            return False
        setting = getattr(self.config, "chunked_loss", None)
        return self.head.dft.num_labels > CHUNKED_LOSS_BLOCK_SIZE if setting is None else bool(setting)

    @property
    def head(self) -> nn.Module:
        """The output head ``(..., d)`` -> ``(..., n)``: an alias of ``classifier``, for code older than the rename."""
        return self.classifier

    def __setattr__(self, name: str, value) -> None:
        # nn.Module.__setattr__ files modules away without consulting properties: `model.head = new_head` would
        # register a second, unused module. Route it to the real attribute instead.
        super().__setattr__("classifier" if name == "head" else name, value)

    @property
    def head_dtype(self) -> torch.dtype:
        """The dtype of the head's parameters (features are cast to it)."""
        return next(self.head.parameters()).dtype

    # ------------------------------------------------------------------ verification helpers
    def effective_head(self) -> tuple[np.ndarray, np.ndarray]:
        """``(W, b)`` float64 of the head's last affine map in its own input space, ``(n, m)`` and ``(n,)``."""
        return self.head.effective_head()

    def head_projection(self) -> tuple[np.ndarray, np.ndarray] | None:
        """``(P, c)`` float64 of the map from encoder features into the head's space, ``(m, d)`` and ``(m,)``.

        The guarantee transfers from the head's input space to encoder features when ``P`` has
        full row rank ``m <= d``. ``None`` for the dense head, which decides in encoder space.
        """
        return self.head.projection() if hasattr(self.head, "projection") else None

    # ------------------------------------------------------------------ prediction
    def predict(
        self,
        texts: str | Sequence[str],
        tokenizer=None,
        *,
        threshold: float | None = None,
        top_k: int | None = None,
        batch_size: int = 32,
        max_length: int | None = None,
        progress: bool | None = None,
    ) -> LabelSetPrediction | list[LabelSetPrediction]:
        """The predicted label set of each text: names, probabilities and the guarantee flag.

        See :func:`predict_label_sets` (this method is that function on ``self``); works the same on a model
        loaded with ``trust_remote_code=True`` without the plugin installed.
        """
        return predict_label_sets(
            self,
            texts,
            tokenizer,
            threshold=threshold,
            top_k=top_k,
            batch_size=batch_size,
            max_length=max_length,
            progress=progress,
        )


def _is_binary(labels: torch.Tensor) -> bool:
    """Whether every entry of ``labels`` is 0 or 1: the chunked loss reads positives; soft targets take the plain
    loss."""
    return bool(((labels == 0) | (labels == 1)).all())


# Checkpoint files name the head's weights as they were before the head became `classifier` (and the dense head's
# linear map `linear`): `head.weight`, `head.dft.slack`, `head.up.weight`, `head.classifier.weight`, ... transformers
# applies these renamings in order when loading and reverses them when saving, so files written before and after the
# rename are identical and load into both versions of the code. Registered under the model type, so that it also
# applies to subclasses and to the remote-code copy of this class.
HEAD_KEY_RENAMINGS = (
    (r"^head\.", "classifier."),
    (r"^classifier\.classifier\.", "classifier.linear."),
)
register_checkpoint_conversion_mapping(
    DFTConfig.model_type,
    [WeightRenaming(source, target) for source, target in HEAD_KEY_RENAMINGS],
    overwrite=True,
)
DFTConfig.register_for_auto_class()
DFTForMultiLabelClassification.register_for_auto_class("AutoModelForSequenceClassification")

__all__ = ["DFTForMultiLabelClassification", "DFTPreTrainedModel", "build_head", "drop_pooler"]
