"""Configuration of a multi-label classifier: any encoder plus a DFT (or baseline) output head."""

from __future__ import annotations

import json
import math

import numpy as np
from transformers import AutoConfig, PretrainedConfig
from transformers.configuration_utils import SubConfigSpec

from .gale import check_dft_sizes, check_label_order, dft_width, largest_dft_k

HEAD_KINDS = ("dft", "bottleneck", "dense")
POOLINGS = ("cls", "mean")
DFT_PATH_CHOICES = ("auto", "fft", "matmul")
#: Config fields with one entry per label (n of them: 1M at extreme label counts).
LABEL_SIZED_FIELDS = ("id2label", "label2id", "label_order", "logit_thresholds")
#: Past this many labels the config's repr summarises the label-sized fields (see ``DFTConfig.__repr__``).
REPR_MAX_LABELS = 100


class LabelMap(dict):
    """A ``dict`` of immutable keys and values (label ids and names) whose deep copy is a shallow copy.

    transformers deep-copies a config several times per load (``to_dict``, ``from_pretrained``); ``copy.deepcopy``
    walks an ``n``-entry map item by item in Python (8 s per copy of a 100k-label config), ``dict(self)`` copies it
    in C, and for ints and strings the two copies are equal. Pickles as a plain ``dict``.
    """

    def __deepcopy__(self, memo: dict) -> LabelMap:
        return LabelMap(self)

    def __reduce__(self):
        return dict, (dict(self),)


class LabelList(list):
    """A ``list`` of immutable items (circle positions, thresholds) whose deep copy is a shallow copy; see
    :class:`LabelMap`. Pickles as a plain ``list``."""

    def __deepcopy__(self, memo: dict) -> LabelList:
        return LabelList(self)

    def __reduce__(self):
        return list, (list(self),)


_PLAIN_TYPES = frozenset((str, int, bool, float, type(None)))


def _all_plain_scalars(values) -> bool:
    """Whether every value is a ``str``, ``int``, ``bool``, ``None`` or finite ``float`` (checked at C speed: a
    1M-entry label map in ~50 ms), i.e. one that transformers' special-float coding leaves unchanged."""
    types = set(map(type, values))
    if not types <= _PLAIN_TYPES:
        return False
    return float not in types or all(map(math.isfinite, (v for v in values if type(v) is float)))


def _convert_scalar(value, convert):
    """``convert(value)`` where it can change something (containers, non-finite floats), else ``value``."""
    if type(value) in _PLAIN_TYPES and not (type(value) is float and not math.isfinite(value)):
        return value
    return convert(value)


class DFTConfig(PretrainedConfig):
    r"""Configuration of [`DFTForMultiLabelClassification`].

    Args:
        encoder (`dict` or `PretrainedConfig`):
            The configuration of the encoder (any `AutoModel` architecture: BERT, RoBERTa, DistilBERT,
            ModernBERT, ...). Stored nested; pass `encoder_model.config.to_dict()` rather than the live object.
        k (`int`, defaults to 10):
            The guaranteed sparsity of the DFT head: every label set of at most `k` labels is argmaxable.
        slack_dims (`int`, defaults to 0):
            Trainable slack columns appended to the fixed DFT matrix. They keep the guarantee and add
            capacity; 2k + 1 + slack_dims must not exceed the number of labels nor the encoder width.
        head_kind (`str`, defaults to `"dft"`):
            `"dft"`, or one of the baselines for like-for-like comparison: `"bottleneck"` (d -> r -> n)
            and `"dense"` (the usual sigmoid classifier d -> n).
        bottleneck_dim (`int`, defaults to 32):
            `r` of the bottleneck head (ignored by the other heads).
        pooling (`str`, defaults to `"cls"`):
            `"cls"` (first token) or `"mean"` (mean over non-padding tokens).
        classifier_dropout (`float`, defaults to 0.1):
            Dropout on the pooled features before the head.
        dft_path (`str`, defaults to `"auto"`):
            How `G @ x` is computed: `"fft"` (inverse real FFT, O(n log n)), `"matmul"` (cached G) or `"auto"`.
        freeze_encoder (`bool`, defaults to `False`):
            Freeze the encoder's parameters (train the head only).
        initializer_range (`float`, defaults to 0.02):
            Standard deviation of the head's random weights.
        label_order (`list[int]`, *optional*):
            DFT head: the circle position of every label (`label_order[i]` for label `i`, a permutation of
            `0..n-1`). The guarantee counts sign changes in this order; placing labels that occur together next to
            each other makes real label sets few arcs (see `hf_dft_head.label_order`). `None`: label-id order.
        label_order_method (`str`, *optional*):
            How `label_order` was computed (`"name"`, `"frequency"`, `"cooccurrence"`), for the record.
        logit_thresholds (`list[float]`, *optional*):
            Per-label decision thresholds on the logits: label `i` is predicted iff `z_i > logit_thresholds[i]`
            (`predict`, the `multi-label-classification` pipeline). `None`: 0 for every label (probability 0.5).
            Non-uniform thresholds act as an extra bias `-t`, so the sign-change rule alone no longer decides which
            sets the head can output.
        chunked_loss (`bool`, *optional*):
            DFT head: compute the training loss (a forward with `labels` while gradients are on) block by block over
            the labels, without ever making the `(B, n)` logits (`hf_dft_head.layers.dft_bce_loss`); the output's
            `logits` are then `None`. Same loss and gradients to float rounding, a fraction of the memory and time at
            large `n`. `None` (default): only when `n` exceeds one block of 8,192 labels, where it was measured
            faster; `True`/`False` force it on/off.
    """

    model_type = "dft_multilabel"
    sub_configs_defaults = {"encoder": SubConfigSpec(config_class=AutoConfig, model_type="bert")}

    encoder: dict | PretrainedConfig | None = None
    k: int = 10
    slack_dims: int = 0
    head_kind: str = "dft"
    bottleneck_dim: int = 32
    pooling: str = "cls"
    classifier_dropout: float = 0.1
    dft_path: str = "auto"
    freeze_encoder: bool = False
    initializer_range: float = 0.02
    label_order: list[int] | None = None
    label_order_method: str | None = None
    logit_thresholds: list[float] | None = None
    chunked_loss: bool | None = None
    problem_type: str | None = "multi_label_classification"

    def __post_init__(self, **kwargs):
        num_labels = kwargs.get("num_labels")
        if num_labels is not None and self.id2label is not None and len(self.id2label) != num_labels:
            raise ValueError(
                f"id2label has {len(self.id2label)} entries but num_labels={num_labels}: give one entry per label, "
                "or drop num_labels and let it follow id2label."
            )
        super().__post_init__(**kwargs)
        if self.head_kind not in HEAD_KINDS:
            raise ValueError(f"head_kind must be one of {HEAD_KINDS}, got {self.head_kind!r}.")
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}.")
        if self.dft_path not in DFT_PATH_CHOICES:
            raise ValueError(f"dft_path must be one of {DFT_PATH_CHOICES}, got {self.dft_path!r}.")
        if self.chunked_loss not in (None, True, False):
            raise ValueError(f"chunked_loss must be True, False or None (automatic), got {self.chunked_loss!r}.")
        if self.problem_type != "multi_label_classification":
            raise ValueError(
                f"problem_type must be 'multi_label_classification' for this model, got {self.problem_type!r}."
            )
        if self.label2id is None and self.id2label is not None:
            self.label2id = {label: i for i, label in self.id2label.items()}

    def __setattr__(self, key, value):
        # The label-sized fields are kept as LabelMap / LabelList, whatever sets them (__init__, from_dict, a user).
        if key in LABEL_SIZED_FIELDS and type(value) is dict:
            value = LabelMap(value)
        elif key in LABEL_SIZED_FIELDS and type(value) is list:
            value = LabelList(value)
        super().__setattr__(key, value)

    @classmethod
    def _decode_special_floats(cls, obj):
        """transformers' decoding of ``{"__float__": "Infinity"}`` tags after reading config.json, with the
        label-sized fields done in one flat pass.

        transformers walks every value of a config recursively, one Python call per value: 2.4 s for the 5M values
        of a 1M-label config, on every load. The label-sized fields hold scalars (names, ids, positions, thresholds),
        so only a tagged threshold can need decoding; the result is the same as transformers' walk.
        """
        if not isinstance(obj, dict) or not any(isinstance(obj.get(name), (dict, list)) for name in LABEL_SIZED_FIELDS):
            return super()._decode_special_floats(obj)
        return cls._map_config_values(obj, super()._decode_special_floats)

    @classmethod
    def _encode_special_floats(cls, obj):
        """transformers' tagging of infinite and NaN floats before writing config.json, with the label-sized fields
        done in one flat pass (see :meth:`_decode_special_floats`)."""
        if not isinstance(obj, dict) or not any(isinstance(obj.get(name), (dict, list)) for name in LABEL_SIZED_FIELDS):
            return super()._encode_special_floats(obj)
        return cls._map_config_values(obj, super()._encode_special_floats)

    @classmethod
    def _map_config_values(cls, config_dict: dict, convert) -> dict:
        """``convert`` applied to every value of ``config_dict``; in the label-sized fields only to the values that
        are not plain scalars (``str``, ``int``, ``bool``, ``None``, finite ``float``), which ``convert`` returns
        unchanged."""
        converted = {}
        for key, value in config_dict.items():
            if key in LABEL_SIZED_FIELDS and isinstance(value, dict):
                plain = _all_plain_scalars(value.values())
                converted[key] = dict(value) if plain else {k: _convert_scalar(v, convert) for k, v in value.items()}
            elif key in LABEL_SIZED_FIELDS and isinstance(value, list):
                plain = _all_plain_scalars(value)
                converted[key] = list(value) if plain else [_convert_scalar(v, convert) for v in value]
            else:
                converted[key] = convert(value)
        return converted

    def __repr__(self) -> str:
        """The config as JSON (its differences from the defaults, as transformers prints it); past
        :data:`REPR_MAX_LABELS` labels its attributes, with the label-sized fields summarised.

        transformers logs every config it loads with an f-string (``logger.info(f"Model config {config}")``) that is
        formatted whether INFO is shown or not: the full JSON of a 100k-label config took 11 s per load, and even the
        differences from the defaults (``to_diff_dict``, which copies and walks every label) 1 s at 1M labels.
        """
        if (self.num_labels or 0) <= REPR_MAX_LABELS:
            return super().__repr__()
        diff = {key: value for key, value in vars(self).items() if not key.startswith("_")}
        for name in LABEL_SIZED_FIELDS:
            if diff.get(name) is not None:
                values = list(diff[name].values() if isinstance(diff[name], dict) else diff[name])
                diff[name] = f"<{len(values)} entries: {values[0]!r}, {values[1]!r}, ..., {values[-1]!r}>"
        if isinstance(diff.get("encoder"), PretrainedConfig):
            diff["encoder"] = diff["encoder"].to_diff_dict()
        return f"{type(self).__name__} {json.dumps(diff, indent=2, sort_keys=True, default=str)}\n"

    @property
    def hidden_size(self) -> int:
        """Width ``d`` of the encoder features fed to the head."""
        return int(self.encoder.hidden_size)

    @property
    def head_input_width(self) -> int:
        """Width of the space the head decides in: ``2k+1+s`` (DFT), ``r`` (bottleneck) or ``d`` (dense)."""
        if self.head_kind == "dft":
            return dft_width(self.k, self.slack_dims)
        if self.head_kind == "bottleneck":
            return self.bottleneck_dim
        return self.hidden_size

    def check_head_sizes(self) -> None:
        """Raise a ``ValueError`` naming the limit when the head cannot be built or loses its guarantee.

        Called when a model is constructed, so bad sizes fail there and not in a forward pass.
        """
        n = self.num_labels
        if self.id2label is not None and len(self.id2label) != n:
            raise ValueError(f"id2label has {len(self.id2label)} entries but num_labels={n}.")
        if self.head_kind == "dft":
            check_dft_sizes(n, self.k, self.slack_dims)
            if self.label_order is not None:
                check_label_order(self.label_order, n)
            width = self.head_input_width
            if width > self.hidden_size:
                raise ValueError(
                    f"2k+1+slack_dims = {width} exceeds the encoder hidden size {self.hidden_size}: the projection "
                    "x = P h + c cannot be onto, so the argmaxability guarantee would not transfer from the head to "
                    f"the encoder's features. Use k <= {largest_dft_k(self.hidden_size, self.slack_dims)} or fewer "
                    "slack dimensions."
                )
        elif self.label_order is not None:
            raise ValueError(f"label_order places labels on the DFT circle; head_kind={self.head_kind!r} has none.")
        if self.logit_thresholds is not None:
            check_logit_thresholds(self.logit_thresholds, n)
        if self.head_kind == "bottleneck" and self.bottleneck_dim < 1:
            raise ValueError(f"bottleneck_dim must be >= 1, got {self.bottleneck_dim}.")


def check_logit_thresholds(logit_thresholds, num_labels: int) -> np.ndarray:
    """Validate per-label logit thresholds and return them as float64 of shape ``(n,)``.

    Raises:
        ValueError: not one number per label, or a NaN (``+inf`` never predicts a label, ``-inf`` always does).
    """
    try:
        thresholds = np.asarray(logit_thresholds, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"logit_thresholds must be a list of numbers, got {logit_thresholds!r}.") from None
    if thresholds.shape != (num_labels,):
        raise ValueError(
            f"logit_thresholds must hold one number per label, shape ({num_labels},), got shape {thresholds.shape}."
        )
    if np.isnan(thresholds).any():
        raise ValueError(f"logit_thresholds has NaN at labels {np.flatnonzero(np.isnan(thresholds))[:5].tolist()}.")
    return thresholds


__all__ = ["DFTConfig", "check_logit_thresholds"]
