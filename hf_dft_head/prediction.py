"""Label sets from a multi-label classifier's logits: thresholds, ``top_k``, names, scores, the guarantee flag.

Copied into every checkpoint next to ``modeling.py`` (remote code: sibling imports only), so that ``model.predict``
works on a checkpoint loaded with ``trust_remote_code=True`` without the package. The functions serve any
multi-label sequence classifier (a stock one too) and the ``multi-label-classification`` pipeline.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import AutoTokenizer

from .configuration import check_logit_thresholds
from .gale import circle_sign_changes

#: Without an explicit ``progress``, a progress bar is shown from this many batches on.
PROGRESS_MIN_BATCHES = 10
#: Truncation length when the tokenizer states no usable ``model_max_length``.
FALLBACK_MAX_LENGTH = 512


@dataclass
class LabelSetPrediction:
    """The predicted label set of one text.

    Attributes:
        labels: predicted label names, highest score first (ties: lower label id first).
        scores: their sigmoid probabilities, aligned with ``labels``.
        within_guarantee: DFT head: whether the set has at most ``2k`` sign changes in circle order, i.e. lies in
            the family of sets the head provably can output (with any thresholds: see :func:`decide_label_sets`).
            ``None`` for a dense, bottleneck or stock head, which has no such guarantee.
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

    The guarantee flag (DFT heads): the head is linear in its input (``z = W x``, no bias), so a set whose signs
    ``W x`` realises with margin ``delta`` keeps them at ``s x`` minus any thresholds once ``s > max |t| / delta``
    (a threshold of ``+inf`` or ``-inf`` only fixes a label that the predicted set already respects). Every set
    with at most ``2k`` sign changes in circle order therefore stays outputtable whatever the thresholds, and the
    flag is that rule. (Thresholds may make further sets outputtable; the flag does not claim those.)
    """
    logits = np.asarray(logits)  # kept in its dtype: (B, n) can be large; only the chosen scores go to float64
    n = int(config.num_labels)
    if logits.ndim != 2 or logits.shape[1] != n:
        raise ValueError(f"logits must have shape (batch, num_labels={n}), got {logits.shape}.")
    check_top_k(top_k)
    thresholds, _ = decision_thresholds(config, threshold)
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
    if getattr(config, "head_kind", None) == "dft":
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


__all__ = [
    "LabelSetPrediction",
    "check_sigmoid_outputs",
    "check_top_k",
    "decide_label_sets",
    "decision_thresholds",
    "predict_label_sets",
    "truncation_length",
]
