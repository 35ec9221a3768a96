"""A multi-label classifier over any `AutoModel` encoder with a DFT (or baseline) output head, and label-set prediction.

This file, ``configuration.py``, ``layers.py`` and ``gale.py`` are copied into every saved
checkpoint (remote code), so they import each other only as ``from .module import name``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm
from transformers import AutoModel, AutoTokenizer, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

from .configuration import DFTConfig, check_logit_thresholds
from .gale import circle_sign_changes
from .layers import BottleneckHead, DenseHead, DFTHead

#: Without an explicit ``progress``, a progress bar is shown from this many batches on.
PROGRESS_MIN_BATCHES = 10
#: Truncation length when the tokenizer states no usable ``model_max_length``.
FALLBACK_MAX_LENGTH = 512


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
        self.head = build_head(config)
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
        **kwargs,
    ) -> SequenceClassifierOutput:
        """Logits ``(B, n)`` and, with ``labels`` (``(B, n)`` multi-hot, float or int), the BCE-with-logits loss.

        Pass either tokenised inputs (``input_ids`` ``(B, T)``, ...) or ``encoder_features`` ``(B, d)``.
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
        logits = self.head(self.dropout(features))

        loss = None
        if labels is not None:
            if labels.shape != logits.shape:
                raise ValueError(
                    f"labels must be multi-hot with shape (batch, num_labels) = {tuple(logits.shape)}, got "
                    f"{tuple(labels.shape)}. Convert label-id lists with hf_dft_head.data's collator."
                )
            loss = nn.functional.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
        return SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=hidden_states, attentions=attentions)

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


# ---------------------------------------------------------------------- label-set prediction
# Module functions rather than methods: they serve any multi-label sequence classifier (a stock one too), the
# `multi-label-classification` pipeline and, as remote code, checkpoints loaded without the package.


@dataclass
class LabelSetPrediction:
    """The predicted label set of one text.

    Attributes:
        labels: predicted label names, highest score first (ties: lower label id first).
        scores: their sigmoid probabilities, aligned with ``labels``.
        within_guarantee: DFT head with a uniform threshold: whether the set has at most ``2k`` sign changes in
            circle order, i.e. lies in the family of sets the head provably can output. ``None`` when the rule does
            not decide it: a dense, bottleneck or stock head, or non-uniform per-label thresholds.
    """

    labels: list[str]
    scores: list[float]
    within_guarantee: bool | None

    def to_dict(self) -> dict:
        """``{"labels": [...], "scores": [...], "within_guarantee": ...}`` (JSON-ready)."""
        return asdict(self)


def decision_thresholds(config, threshold: float | None = None) -> tuple[np.ndarray, bool]:
    """The logit threshold of every label, ``(n,)`` float64, and whether they are all equal.

    ``threshold`` is a probability in ``[0, 1]`` applied to every label (``0`` predicts every label, ``1`` none);
    ``None`` takes ``config.logit_thresholds`` when set, else 0.5 (logit 0) for all.
    """
    n = int(config.num_labels)
    if threshold is not None:
        if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold is a probability in [0, 1], got {threshold!r}.")
        if threshold in (0, 1):
            logit = -math.inf if threshold == 0 else math.inf
        else:
            logit = math.log(threshold) - math.log1p(-threshold)
        return np.full(n, logit), True
    configured = getattr(config, "logit_thresholds", None)
    if configured is None:
        return np.zeros(n), True
    thresholds = check_logit_thresholds(configured, n)
    return thresholds, bool(np.all(thresholds == thresholds[0]))


def check_top_k(top_k: int | None) -> None:
    """Raise a ``ValueError`` unless ``top_k`` is ``None`` or an integer >= 1."""
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1):
        raise ValueError(f"top_k must be an integer >= 1 (or None for no cap), got {top_k!r}.")


def decide_label_sets(
    logits, config, *, threshold: float | None = None, top_k: int | None = None
) -> list[LabelSetPrediction]:
    """Turn logits ``(B, n)`` into ``B`` predicted label sets.

    Label ``i`` is predicted iff ``z_i > t_i`` (strictly; compared on logits, so probabilities that round to 1.0
    still rank), with ``t`` from :func:`decision_thresholds`. ``top_k`` caps the set: of the labels above their
    thresholds, the ``top_k`` with the highest logits are kept (for exactly the ``top_k`` best labels pass
    ``threshold=0``).

    The guarantee flag (DFT heads): ``G``'s first column is constant, so a uniform threshold ``t`` only shifts
    ``x_0`` and the head can output exactly the same sets at any uniform threshold; the rule "at most ``2k``
    sign changes in circle order" then decides. Per-label thresholds that differ act as a bias outside that
    column, so the flag is ``None`` (not decided by the rule), as for heads without a guarantee.
    """
    logits = np.asarray(logits)  # kept in its dtype: (B, n) can be large; only the chosen scores go to float64
    n = int(config.num_labels)
    if logits.ndim != 2 or logits.shape[1] != n:
        raise ValueError(f"logits must have shape (batch, num_labels={n}), got {logits.shape}.")
    check_top_k(top_k)
    thresholds, uniform = decision_thresholds(config, threshold)
    above = logits > thresholds
    chosen = np.zeros_like(above)
    id2label = config.id2label or {}
    results_ids = []
    for row, candidates in enumerate(above):
        ids = np.flatnonzero(candidates)
        ids = ids[np.lexsort((ids, -logits[row, ids]))][:top_k]  # highest logit first, ties by label id
        chosen[row, ids] = True
        results_ids.append(ids)
    flags = [None] * len(results_ids)
    if getattr(config, "head_kind", None) == "dft" and uniform:
        changes = circle_sign_changes(chosen, getattr(config, "label_order", None))
        flags = [bool(count <= 2 * config.k) for count in changes]
    return [
        LabelSetPrediction(
            labels=[str(id2label.get(int(i), i)) for i in ids],
            # sigmoid(z) = exp(-log(1 + exp(-z))): no overflow for large |z|
            scores=np.exp(-np.logaddexp(0.0, -logits[row, ids].astype(np.float64))).tolist(),
            within_guarantee=flags[row],
        )
        for row, ids in enumerate(results_ids)
    ]


def check_sigmoid_outputs(config, assume_multi_label: bool = False) -> None:
    """Raise a ``ValueError`` unless the model's outputs are independent sigmoid logits (a multi-label head)."""
    problem_type = getattr(config, "problem_type", None)
    if problem_type == "multi_label_classification" or (problem_type is None and assume_multi_label):
        return
    fix = " (or pass assume_multi_label=True if it was trained with a sigmoid/BCE loss)" if problem_type is None else ""
    raise ValueError(
        f"This model has problem_type={problem_type!r}: its logits are not independent sigmoids, so label sets "
        f"cannot be predicted by thresholds. A multi-label model has problem_type='multi_label_classification'{fix}."
    )


def truncation_length(tokenizer, max_length: int | None = None) -> int:
    """``max_length`` when given (validated), else the tokenizer's ``model_max_length`` when it states a real one."""
    if max_length is not None:
        if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 2:
            raise ValueError(f"max_length must be an integer >= 2 (tokens per text), got {max_length!r}.")
        return max_length
    limit = getattr(tokenizer, "model_max_length", None)
    return int(limit) if isinstance(limit, int) and 0 < limit <= 100_000 else FALLBACK_MAX_LENGTH


def _check_texts(texts) -> list[str]:
    if isinstance(texts, (bytes, dict)) or not hasattr(texts, "__iter__"):
        raise ValueError(f"texts must be a string or a list of strings, got {type(texts).__name__}.")
    texts = list(texts)
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise ValueError(f"texts[{index}] is a {type(text).__name__}, not a string: pass the text itself.")
    return texts


def predict_label_sets(
    model,
    texts: str | Sequence[str],
    tokenizer=None,
    *,
    threshold: float | None = None,
    top_k: int | None = None,
    batch_size: int = 32,
    max_length: int | None = None,
    progress: bool | None = None,
    assume_multi_label: bool = False,
) -> LabelSetPrediction | list[LabelSetPrediction]:
    """Predict the label set of each text with a multi-label sequence classifier (ours or a stock one).

    Batched, without gradients, on the model's device, with the model in eval mode for the call (its mode is
    restored afterwards).

    Args:
        model: a [`DFTForMultiLabelClassification`] or any ``AutoModelForSequenceClassification`` whose config has
            ``problem_type="multi_label_classification"``.
        texts: one text (returns one prediction) or a list of texts (returns a list, in order).
        tokenizer: the model's tokenizer; default: ``AutoTokenizer.from_pretrained(model.name_or_path)``.
        threshold: probability in ``[0, 1]`` for every label; ``None``: ``config.logit_thresholds`` if set,
            else 0.5. See :func:`decide_label_sets`.
        top_k: at most this many labels per text (the highest of those above the threshold); ``None``: no cap.
        batch_size: texts per forward pass.
        max_length: tokens per text (longer texts are truncated); default: the tokenizer's limit.
        progress: show a progress bar; ``None``: from :data:`PROGRESS_MIN_BATCHES` batches on.
        assume_multi_label: accept a stock model whose config has no ``problem_type``.

    Returns:
        [`LabelSetPrediction`] (one text) or a list of them.
    """
    check_sigmoid_outputs(model.config, assume_multi_label)
    single = isinstance(texts, str)
    texts = _check_texts([texts] if single else texts)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}.")
    check_top_k(top_k)
    decision_thresholds(model.config, threshold)  # bad thresholds fail before any forward pass
    if tokenizer is None:
        tokenizer = _default_tokenizer(model)
    if batch_size > 1 and getattr(tokenizer, "pad_token", None) is None:
        raise ValueError(
            "The tokenizer has no padding token, so texts cannot be batched: set tokenizer.pad_token (e.g. to "
            "tokenizer.eos_token, with model.config.pad_token_id to match) or pass batch_size=1."
        )
    length = truncation_length(tokenizer, max_length)
    starts = range(0, len(texts), batch_size)
    show = progress if progress is not None else len(starts) >= PROGRESS_MIN_BATCHES
    was_training = model.training
    model.eval()
    results: list[LabelSetPrediction] = []
    try:
        with torch.no_grad():
            for start in tqdm(starts, desc="predict", unit="batch", disable=not show):
                chunk = texts[start : start + batch_size]
                batch = tokenizer(
                    chunk,
                    padding=len(chunk) > 1,  # a lone text needs no padding (nor a padding token)
                    truncation=True,
                    max_length=length,
                    return_tensors="pt",
                ).to(model.device)
                logits = model(**batch).logits.float().cpu().numpy()
                results += decide_label_sets(logits, model.config, threshold=threshold, top_k=top_k)
    finally:
        model.train(was_training)
    return results[0] if single else results


def _default_tokenizer(model):
    name = getattr(model, "name_or_path", "") or getattr(model.config, "name_or_path", "")
    if not name:
        raise ValueError("Pass tokenizer=AutoTokenizer.from_pretrained(...): the model does not say where it is from.")
    try:
        # trust_remote_code=False: a standard tokenizer needs no code, and None would ask on the terminal.
        return AutoTokenizer.from_pretrained(name, trust_remote_code=False)
    except (OSError, ValueError, TypeError) as error:
        raise ValueError(
            f"No tokenizer could be loaded from {name} ({error}); pass tokenizer=AutoTokenizer.from_pretrained(...)."
        ) from None


DFTConfig.register_for_auto_class()
DFTForMultiLabelClassification.register_for_auto_class("AutoModelForSequenceClassification")

__all__ = [
    "DFTForMultiLabelClassification",
    "DFTPreTrainedModel",
    "LabelSetPrediction",
    "build_head",
    "decide_label_sets",
    "decision_thresholds",
    "drop_pooler",
    "predict_label_sets",
]
