"""The sigmoid head of a loaded multi-label checkpoint: its last affine map in the space where it decides.

:func:`find_sigmoid_head` locates it once for the audit, the certificate, threshold tuning and the argmaxability
metric: a DFT model of this package gives its ``effective_head()`` in the head's own input space (width 2k+1+s
for DFT, r for the bottleneck, d for the dense head); a stock ``...ForSequenceClassification`` gives its last
``nn.Linear`` with ``num_labels`` outputs, in that layer's input features (with BERT's exact ``tanh`` box).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .checkpoints import check_multi_label_config
from .prediction import decision_thresholds


@dataclass
class SigmoidHead:
    """The last affine map of a multi-label sigmoid head, in the space where argmaxability is decided.

    ``weight`` ``(n, m)`` and ``bias`` ``(n,)`` are float64; label ``i`` is predicted when ``weight[i] @ x + bias[i]
    > 0``. ``box`` is an exact bound on ``|x|_inf`` when the architecture gives one (tanh features), else ``None``
    (the verifier then uses its default box, a modelling choice and not a property of the model).
    ``dft_k`` is the DFT head's k (with ``slack_dims`` slack columns), ``None`` for other heads; ``label_order``
    its circle positions (``(n,)``, ``None`` for label-id order).
    ``projection`` is ``(P, c)`` mapping encoder features into this space, or ``None``.
    ``logit_thresholds`` ``(n,)``: the config's per-label decision thresholds (label ``i`` is predicted when
    ``weight[i] @ x + bias[i] > logit_thresholds[i]``), ``None`` when it sets none; ``weight`` and ``bias`` stay the
    raw head's, :meth:`decision_head` is the head the model predicts with.
    """

    weight: np.ndarray
    bias: np.ndarray
    kind: str
    space: str
    box: float | None = None
    dft_k: int | None = None
    slack_dims: int = 0
    label_order: np.ndarray | None = None
    projection: tuple[np.ndarray, np.ndarray] | None = None
    model_dtype: str = "float32"
    label_names: list[str] = field(default_factory=list)
    logit_thresholds: np.ndarray | None = None

    @property
    def thresholds_kind(self) -> str:
        """``"none"`` (no thresholds, or all 0), ``"uniform"`` (one finite value for every label) or ``"per_label"``."""
        t = self.logit_thresholds
        if t is None or not np.any(t):
            return "none"
        return "uniform" if np.all(t == t[0]) and np.isfinite(t[0]) else "per_label"

    @property
    def rule_applies(self) -> bool:
        """Whether the DFT sign-change rule decides the thresholded head: a DFT head without per-label thresholds.

        A uniform threshold ``t`` is a bias ``-t`` on every label, absorbed by ``G``'s constant column (``x_0`` moves
        by ``t sqrt(n)``): the head outputs the same sets. Per-label thresholds are a bias outside that column.
        """
        return self.dft_k is not None and self.thresholds_kind != "per_label"

    def decision_head(self) -> tuple[np.ndarray, np.ndarray]:
        """``(W, b - t)`` ``(n, m)``, ``(n,)``: label ``i`` is predicted iff ``W[i] @ x + (b - t)[i] > 0``.

        An infinite threshold makes its label constant: ``+inf`` never predicts it (a zero row with bias -1),
        ``-inf`` always does (a zero row with bias +1), which is exactly what ``z_i > t_i`` does for finite ``z``.
        """
        if self.logit_thresholds is None:
            return self.weight, self.bias
        t = self.logit_thresholds
        finite = np.isfinite(t)
        weight = np.where(finite[:, None], self.weight, 0.0)
        bias = np.where(finite, self.bias - np.where(finite, t, 0.0), np.where(t > 0, -1.0, 1.0))
        return weight, bias

    @property
    def num_labels(self) -> int:
        """n."""
        return int(self.weight.shape[0])

    @property
    def width(self) -> int:
        """m, the width of the space the head decides in."""
        return int(self.weight.shape[1])

    def describe(self) -> dict[str, Any]:
        """JSON-ready description (no matrices)."""
        return {
            "kind": self.kind,
            "space": self.space,
            "num_labels": self.num_labels,
            "width": self.width,
            "box": self.box,
            "dft_k": self.dft_k,
            "slack_dims": self.slack_dims,
            "label_order": describe_label_order(self.label_order),
            "model_dtype": self.model_dtype,
            "logit_thresholds": describe_thresholds(self.logit_thresholds),
        }


def describe_thresholds(thresholds: np.ndarray | None) -> str | None:
    """``None`` without thresholds, else ``"sha256:<digest of the float64 values>"`` (the config holds them)."""
    if thresholds is None:
        return None
    return "sha256:" + hashlib.sha256(np.asarray(thresholds, dtype="<f8").tobytes()).hexdigest()


def describe_label_order(label_order: np.ndarray | None) -> str | None:
    """``None`` for label-id order, else ``"sha256:<digest of the int64 positions>"`` (the config holds them)."""
    if label_order is None:
        return None
    return "sha256:" + hashlib.sha256(np.asarray(label_order, dtype="<i8").tobytes()).hexdigest()


def model_label_names(config, num_labels: int) -> list[str]:
    """The label names of a model config, ``LABEL_<i>`` where it names none."""
    id2label = getattr(config, "id2label", None) or {}
    by_id = {int(key): str(value) for key, value in id2label.items()}
    return [by_id.get(i, f"LABEL_{i}") for i in range(num_labels)]


def _tanh_bounded_bert_classifier(model, linear) -> bool:
    """True when ``linear`` reads BERT's ``tanh(pooler)`` output directly (``BertForSequenceClassification``).

    Then every feature it sees lies in (-1, 1): the box ``|x|_inf <= 1`` is exact, not a modelling choice.
    """
    if getattr(model, "classifier", None) is not linear:
        return False
    base = getattr(model, getattr(model, "base_model_prefix", ""), None)
    pooler = getattr(base, "pooler", None)
    return pooler is not None and isinstance(getattr(pooler, "activation", None), torch.nn.Tanh)


def find_sigmoid_head(model, *, assume_multi_label: bool = False) -> SigmoidHead:
    """Locate the sigmoid head of a loaded multi-label model.

    * A :class:`~hf_dft_head.DFTForMultiLabelClassification`: its ``effective_head()`` in the head's own input
      space (``(n, 2k+1+s)`` for DFT, ``(n, r)`` for the bottleneck, ``(n, d)`` for the dense head).
    * A stock ``...ForSequenceClassification``: the last ``nn.Linear`` with ``out_features == num_labels`` (the
      classifier's output layer), in the space of its input features. For BERT those are ``tanh(pooler)``
      features and the exact box ``|x|_inf <= 1`` is recorded.

    Raises ``ValueError`` for single-label / regression models and models without such a layer.
    """
    config = model.config
    check_multi_label_config(config, assume_multi_label=assume_multi_label)
    dtype = str(next(model.parameters()).dtype).replace("torch.", "")
    # The thresholds predict, model.predict and the pipeline apply (None when the config sets none).
    thresholds = decision_thresholds(config)[0] if getattr(config, "logit_thresholds", None) is not None else None
    if hasattr(model, "effective_head") and getattr(config, "head_kind", None) is not None:
        weight, bias = model.effective_head()
        kind = config.head_kind
        projection = model.head_projection() if hasattr(model, "head_projection") else None
        if kind == "dft":
            space = f"DFT head input x = P h + c (width 2k+1+slack = {weight.shape[1]})"
        elif kind == "bottleneck":
            space = f"bottleneck middle layer (width r = {weight.shape[1]})"
        else:
            space = f"encoder features fed to the dense head (width d = {weight.shape[1]})"
        return SigmoidHead(
            weight=np.asarray(weight, dtype=np.float64),
            bias=np.asarray(bias, dtype=np.float64),
            kind=kind,
            space=space,
            box=None,
            dft_k=int(config.k) if kind == "dft" else None,
            slack_dims=int(config.slack_dims) if kind == "dft" else 0,
            label_order=np.asarray(config.label_order, dtype=np.int64)
            if kind == "dft" and getattr(config, "label_order", None) is not None
            else None,
            projection=projection,
            model_dtype=dtype,
            label_names=model_label_names(config, weight.shape[0]),
            logit_thresholds=thresholds,
        )

    num_labels = int(config.num_labels)
    candidates = [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and module.out_features == num_labels
    ]
    if not candidates:
        raise ValueError(
            f"No nn.Linear with out_features == num_labels ({num_labels}) in {type(model).__name__}: cannot find the "
            "classifier's output layer. Audit the head directly with hf_dft_head.argmax.verify_label_sets(W, b, ...)."
        )
    name, linear = candidates[-1]
    weight = linear.weight.detach().double().cpu().numpy()
    bias = linear.bias.detach().double().cpu().numpy() if linear.bias is not None else np.zeros(weight.shape[0])
    bounded = _tanh_bounded_bert_classifier(model, linear)
    space = f"input features of {type(model).__name__}.{name} (width {weight.shape[1]})"
    if bounded:
        space += ", tanh(pooler) outputs: |x|_inf <= 1 exactly"
    return SigmoidHead(
        weight=weight,
        bias=bias,
        kind="stock",
        space=space,
        box=1.0 if bounded else None,
        model_dtype=dtype,
        label_names=model_label_names(config, num_labels),
        logit_thresholds=thresholds,
    )
