"""Audit any Hugging Face multi-label sigmoid checkpoint: which label sets in the data can it never output?

``hf-dft audit MODEL --dataset DATA [--split test]`` loads the checkpoint (a DFT model of this package, or a stock
``AutoModelForSequenceClassification`` trained with ``problem_type="multi_label_classification"``), finds the last
affine map of its sigmoid head in that head's *own* input space, and runs the argmaxability engine
(:mod:`hf_dft_head.argmax`) on

* the distinct gold label sets of one split of the data, and
* the distinct label sets the model predicts on that split (sigmoid > 0.5, i.e. logit > 0).

It writes a JSON report, prints a short human summary (with label names) and, with ``--plot``, a PNG of the
argmaxable share by label-set size.

Where the decision is made (docs/theory.md, section 4): a DFT head decides in ``x = P h + c`` (width 2k+1+s), a
bottleneck head in its r-dim middle layer, a dense head and a stock classifier in the classifier's input features.
For a stock BERT the classifier reads ``tanh(pooler)`` features, so ``|x|_inf <= 1`` is an exact bound on what it
can see and the audit uses that box: a set argmaxable only outside the box is one the model can never output.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import tempfile
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib.ticker
import numpy as np
import torch
from matplotlib.figure import Figure
from tqdm.auto import tqdm

from . import data, sharding

# DEFAULT_EPSILON: a set is epsilon-argmaxable when its Chebyshev radius is at least epsilon * box.
# DEFAULT_BOX: the box used when nothing bounds the head's input features (the LP is homogeneous without one).
from .argmax import DEFAULT_BOX, DEFAULT_EPSILON
from .argmax.radii import (
    RADIUS_ROW_BUDGET,
    radius_sample_size,  # noqa: F401  (the audit's name for it; moved to argmax.radii)
    verify_with_radius_policy,
)
from .argmax.radii import sets_digest as _sets_digest
from .checkpoints import check_multi_label_config, load_checkpoint
from .metrics.quality import QualityAccumulator
from .output_checks import OutputLocationError, new_file_mode
from .prediction import decision_thresholds
from .version import __version__

logger = logging.getLogger(__name__)

AUDIT_REPORT_NAME = "argmaxability_audit.json"
AUDIT_FIGURE_NAME = "argmaxability.png"
VERDICTS = ("argmaxable", "unargmaxable", "undecided")
#: Cut-offs of the quality metrics recorded with an audit (P@k, R@k, F1@k, nDCG@k).
QUALITY_KS = (1, 3, 5)


@dataclass
class VerifierOptions:
    """How an audit (and a certificate) runs the argmaxability engine; a certificate records them for ``verify``."""

    epsilon: float = field(
        default=DEFAULT_EPSILON,
        metadata={"help": f"epsilon-argmaxable: Chebyshev radius >= epsilon * box (default {DEFAULT_EPSILON:g})"},
    )
    box: float | None = field(
        default=None,
        metadata={
            "help": "bound B on |x|_inf of the head's inputs (default: the exact bound if the architecture gives "
            f"one, e.g. 1 for BERT's tanh pooler, else {DEFAULT_BOX:g})"
        },
    )
    rule_only: bool = field(
        default=False,
        metadata={"help": "DFT heads: accept the sign-change rule's yes without an LP (fast; no radii)"},
    )
    radius_sample: int | None = field(
        default=None,
        metadata={
            "help": "DFT heads: how many of the argmaxable sets the rule decides get their radius by LP, a random "
            "sample drawn with --radius-seed (0: none; default: all of them while sets x labels <= "
            f"{RADIUS_ROW_BUDGET:,}, else {RADIUS_ROW_BUDGET:,} // labels, at least 1)"
        },
    )
    radius_seed: int = field(default=0, metadata={"help": "seed of the radius sample (see --radius-sample)"})
    predictions: bool = field(
        default=True,
        metadata={"help": "also verify the label sets the model predicts on the split (--no-predictions: gold only)"},
    )
    workers: int | None = field(
        default=None,
        metadata={
            "help": "processes for the LP verifier; results do not depend on it (default: the cores available for "
            "heads the LP decides: slack, dense, bottleneck, stock; 1 for a pure DFT head, which the rule decides)"
        },
    )
    batch_size: int = field(default=32, metadata={"help": "batch size for computing predictions"})
    max_length: int = field(default=128, metadata={"help": "tokenizer max length for predictions"})

    def __post_init__(self) -> None:
        for name in ("batch_size", "max_length"):
            if getattr(self, name) < 1:  # before any work, and not as "range() arg 3 must not be zero" later
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}.")
        if self.workers is not None and self.workers < 1:
            raise ValueError(f"--workers must be >= 1, got {self.workers} (leave it out for every available core).")
        if self.radius_sample is not None and self.radius_sample < 0:
            raise ValueError(f"--radius-sample must be >= 0, got {self.radius_sample} (0: no radii).")

    def recorded(self) -> dict[str, Any]:
        """The options that decide the results (``workers`` does not), JSON-ready."""
        return {key: value for key, value in dataclasses.asdict(self).items() if key != "workers"}


def available_cores() -> int:
    """The CPU cores this process may run on (its affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # no sched_getaffinity (macOS, Windows)
        return os.cpu_count() or 1


def resolve_workers(workers: int | None, head: SigmoidHead) -> int:
    """``workers`` if given, else every available core for a head the LP decides, 1 for a pure DFT head.

    The rule decides a pure DFT head's sets in-process in microseconds (the radius sample's LPs are few);
    worker processes would each receive a copy of its ``(n, 2k+1)`` matrix for nothing. Under ``accelerate launch``
    the cores are shared by the launched processes of the machine (:func:`hf_dft_head.sharding.cores_per_process`).
    """
    if workers is not None:
        return int(workers)
    return 1 if head.rule_applies and head.slack_dims == 0 else sharding.cores_per_process(available_cores())


# ----------------------------------------------------------------------------------------------------------------
# Finding the sigmoid head of a checkpoint
# ----------------------------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------------------------
# Data: the gold label sets of one split, aligned to the model's label ids
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class AuditSplit:
    """One split of a dataset, with labels as sorted model label-id tuples.

    ``texts`` (N strings); ``label_sets`` (N sorted tuples of model label ids); ``spec`` how to load it again
    (JSON-ready); ``fingerprint`` sha256 of the texts and label sets, so a later check can tell the data changed.
    """

    texts: list[str]
    label_sets: list[tuple[int, ...]]
    spec: dict[str, Any]
    fingerprint: str
    dropped_labels: dict[str, int] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        """The JSON-ready record of this split in reports: its spec, size, fingerprint and dropped labels."""
        return {
            **self.spec,
            "examples": len(self.texts),
            "fingerprint_sha256": self.fingerprint,
            "labels_unknown_to_model": self.dropped_labels,
        }


def dataset_spec(dataset: str | None, split: str = "test", *, seed: int = 42, **options: Any) -> data.DataSpec:
    """Shorthand for :class:`~hf_dft_head.data.DataSpec` ``(dataset=..., split=..., seed=..., **options)``: the split
    that :func:`load_audit_split` loads (and a certificate records).

    ``dataset`` and ``options`` are :class:`~hf_dft_head.data.DataArguments` fields (a bundled data set by name, a
    local file or folder, a Hub id, ``data_files``, the label columns...). ``seed`` carves a validation split the
    same way training did, when the data has none.
    """
    return data.DataSpec(dataset=dataset, split=split, seed=seed, **options)


def _fingerprint(texts: Sequence[str], label_sets: Sequence[Sequence[int]]) -> str:
    digest = hashlib.sha256()
    for text, labels in zip(texts, label_sets):
        digest.update(json.dumps([text, list(labels)], ensure_ascii=False).encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()


def _align_vocabulary(dataset_labels: Sequence[str], model_labels: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """Map dataset label ids to model label ids by name; ``-1`` for names the model does not have.

    A model whose labels are transformers' defaults (``LABEL_0``...) and has as many labels as the data is
    matched by position.
    """
    model_index = {name: i for i, name in enumerate(model_labels)}
    default_names = all(name == f"LABEL_{i}" for i, name in enumerate(model_labels))
    if default_names and len(dataset_labels) == len(model_labels):
        logger.warning("The model's labels are unnamed (LABEL_0...): matching the data's labels by position.")
        return np.arange(len(dataset_labels)), []
    mapping = np.array([model_index.get(name, -1) for name in dataset_labels], dtype=np.int64)
    missing = [name for name, target in zip(dataset_labels, mapping) if target < 0]
    if len(missing) == len(dataset_labels):
        raise ValueError(
            f"None of the data's labels ({list(dataset_labels)[:5]}...) is a label of the model "
            f"({list(model_labels)[:5]}...): is this the data the model was trained on? Pass the model's own data "
            "(--dataset), or the column holding its labels (--label-column)."
        )
    return mapping, missing


def load_audit_split(spec: data.DataSpec | Mapping[str, Any], model_labels: Sequence[str]) -> AuditSplit:
    """Load the split described by ``spec`` (a :class:`~hf_dft_head.data.DataSpec`, or its record) with labels as
    model label ids.

    Data labels the model does not know are dropped from their examples (counted in ``dropped_labels``); it is
    the model's label space that is audited.
    """
    if not isinstance(spec, data.DataSpec):
        spec = data.DataSpec.from_record(spec)
    source, split = spec.source, spec.split
    default_names = all(name == f"LABEL_{i}" for i, name in enumerate(model_labels))
    # The model's label vocabulary decides (not the data's train split).
    loaded, split = data.load_split(spec, label_names=None if default_names else list(model_labels))
    table = loaded.dataset[split]
    mapping, missing = _align_vocabulary(loaded.vocabulary.labels, model_labels)
    dropped: Counter[str] = Counter(((loaded.summary.get("splits") or {}).get(split) or {}).get("dropped_labels") or {})
    texts = list(table["text"])
    label_sets = []
    for ids in table["labels"]:
        ids = np.asarray(ids, dtype=np.int64)
        mapped = mapping[ids]
        for dataset_id in ids[mapped < 0]:
            dropped[loaded.vocabulary.labels[int(dataset_id)]] += 1
        label_sets.append(tuple(sorted(int(i) for i in mapped[mapped >= 0])))
    if not texts:
        raise ValueError(f"split={spec.split!r} of {source!r} is empty.")
    known = sum(len(label_set) for label_set in label_sets)
    if known == 0:
        # Every gold set would be the empty set, which any head can output: an audit (or certificate) of such
        # data says nothing about the model, so it is refused rather than reported as all-argmaxable.
        shown = ", ".join(repr(name) for name, _ in dropped.most_common(5)) + (", ..." if len(dropped) > 5 else "")
        model_shown = ", ".join(map(repr, list(model_labels)[:5])) + (", ..." if len(model_labels) > 5 else "")
        found = (
            f"none of its {sum(dropped.values())} label occurrences ({shown}) is a label of the model (whose labels "
            f"are {model_shown})"
            if dropped
            else "no example has any label"
        )
        raise ValueError(
            f"split={split!r} of {source!r}: {found}, so there is nothing to audit. Is this the data the model was "
            "trained on, and is the label column right? Pass the model's own data with --dataset, or its label "
            "column with --label-column / --label-format."
        )
    if dropped:
        logger.warning("Labels of the data unknown to the model, dropped from their examples: %s", dict(dropped))
    return AuditSplit(texts, label_sets, spec.to_record(), _fingerprint(texts, label_sets), dict(dropped))


# ----------------------------------------------------------------------------------------------------------------
# Predictions
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class Predictions:
    """What the model outputs on a split: ``label_sets`` (N sorted label-id tuples: logit above the label's decision
    threshold) and the ``quality`` metrics of its logits against the gold sets (``None`` when not computed)."""

    label_sets: list[tuple[int, ...]]
    quality: dict[str, float] | None


def logit_batches(
    model, tokenizer, texts: Sequence[str], *, batch_size: int = 32, max_length: int = 128, progress: bool = True
) -> Iterator[np.ndarray]:
    """The model's float32 logits ``(b, n)`` of ``texts``, batch by batch (eval mode, no gradients)."""
    if tokenizer is None:  # now, not at the first batch
        raise ValueError("The checkpoint has no tokenizer: predictions need one (save it next to the weights).")
    model.eval()
    device = next(model.parameters()).device

    def batches() -> Iterator[np.ndarray]:
        for start in tqdm(range(0, len(texts), batch_size), desc="Predicting", disable=not progress, unit="batch"):
            batch = tokenizer(
                list(texts[start : start + batch_size]),
                padding=True,
                truncation=True,
                max_length=max_length,
                return_tensors="pt",
            )
            with torch.no_grad():
                yield model(**{key: value.to(device) for key, value in batch.items()}).logits.float().cpu().numpy()

    return batches()


def predict_label_sets(
    model,
    tokenizer,
    texts: Sequence[str],
    *,
    gold_sets: Sequence[tuple[int, ...]] | None = None,
    batch_size: int = 32,
    max_length: int = 128,
    progress: bool = True,
) -> Predictions:
    """The label set the model outputs for each text, and its quality, batch by batch.

    Label ``i`` is predicted when its logit exceeds ``config.logit_thresholds[i]`` (0, i.e. sigmoid > 0.5, when the
    config sets none), as ``model.predict`` and the pipeline decide. With ``gold_sets`` (N label-id tuples) the
    quality metrics of :func:`hf_dft_head.metrics.quality.multilabel_quality_report` at ``QUALITY_KS`` are computed:
    the ranking metrics from the logits, micro/macro-F1 and exact match from the predicted sets. Nothing of size
    ``(N, n)`` is held: each ``(batch_size, n)`` batch of logits gives its predicted sets (id lists) and its share of
    the metrics' statistics (:class:`~hf_dft_head.metrics.quality.QualityAccumulator`), and is dropped.
    """
    num_labels = int(model.config.num_labels)
    thresholds = decision_thresholds(model.config)[0]
    accumulator = QualityAccumulator(num_labels, ks=QUALITY_KS) if gold_sets is not None else None
    predicted: list[tuple[int, ...]] = []
    for logits in logit_batches(
        model, tokenizer, texts, batch_size=batch_size, max_length=max_length, progress=progress
    ):
        decisions = logits > thresholds  # (b, n) bool: the sets the model outputs
        rows, labels = np.nonzero(decisions)
        starts = np.searchsorted(rows, np.arange(len(logits) + 1))
        batch_sets = [tuple(labels[starts[i] : starts[i + 1]].tolist()) for i in range(len(logits))]
        if accumulator is not None:
            gold = [list(s) for s in gold_sets[len(predicted) : len(predicted) + len(logits)]]
            # The threshold metrics of what the model predicts, not of sigmoid > 0.5, when it has thresholds.
            accumulator.add(logits, gold, predicted=decisions if np.any(thresholds) else None)
        predicted.extend(batch_sets)
    return Predictions(predicted, accumulator.report() if accumulator is not None else None)


# ----------------------------------------------------------------------------------------------------------------
# Running the engine and summarising
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class SetResult:
    """The engine's answer for one label set: verdict, Chebyshev radius (``nan`` when not computed), whether it is
    epsilon-argmaxable (``None`` when the radius was not computed), how it was decided and why."""

    label_set: tuple[int, ...]
    verdict: str
    radius: float = math.nan
    epsilon_argmaxable: bool | None = None
    method: str = ""
    reason: str | None = None


def verify_sets(
    head: SigmoidHead,
    label_sets: Sequence[tuple[int, ...]],
    *,
    epsilon: float = DEFAULT_EPSILON,
    box: float | None = None,
    radii: bool = True,
    radius_sample: int | None = None,
    radius_seed: int = 0,
    workers: int | None = None,
    progress: bool = True,
) -> tuple[list[SetResult], dict[str, Any]]:
    """Run the argmaxability engine on ``label_sets`` for ``head``; returns per-set results and the settings used.

    The engine decides over all of R^m (its ``box`` only holds the Chebyshev centre and scales epsilon). When the
    head's features have an exact bound (``head.box``: BERT's tanh pooler gives the open cube ``|x|_inf < 1``) and
    ``box`` is not overridden, the bound is made part of the problem: ``2m`` extra rows ``1 - x_j > 0`` and
    ``1 + x_j > 0`` that every set must switch on. Verdicts, witnesses and Farkas certificates then speak about
    inputs the classifier can actually receive, and radii are measured inside the cube. ``box`` overrides this
    with the engine's plain box (default ``DEFAULT_BOX``). A head with ``logit_thresholds`` is verified as it
    predicts, with bias ``b - t`` (:meth:`SigmoidHead.decision_head`); the DFT rule is used only where it still
    decides (``head.rule_applies``), per-label thresholds go to the LP.

    Radii (``radii``): every set the LP decides gets its Chebyshev radius from that LP, run to the optimum. Where
    the DFT rule decides (its "yes", and a pure DFT head's "no", proven by a Farkas certificate from ``2k + 2``
    rows), no LP runs per set; the radii of the rule's argmaxable sets (one full LP over the n rows each) are then
    computed for ``radius_sample_size(radius_sample, ...)`` of them, drawn with ``numpy.random.default_rng(
    radius_seed)`` from those sets in the order given (all of them when they fit). ``settings["radius"]`` says which
    (``computed_for``: ``"all"``, ``"sample"`` or ``"none"``, the population, the sample size, the seed and the
    sha256 of the sampled sets), so that a verifier recomputes exactly that sample. ``radii=False`` takes the rule's
    "yes" as is (``computed_for: "none"``). ``workers``: see :func:`resolve_workers`; results do not depend on it.
    """
    weight, bias = head.decision_head()
    sets = [list(s) for s in label_sets]
    bounded = box is None and head.box is not None
    if bounded:
        used_box = float(head.box)
        width, n = head.width, head.num_labels
        identity = np.eye(width)
        weight = np.vstack([weight, -identity, identity])  # (n + 2m, m)
        bias = np.concatenate([bias, np.full(2 * width, used_box)])
        always_on = list(range(n, n + 2 * width))
        sets = [s + always_on for s in sets]
    else:
        used_box = float(box if box is not None else DEFAULT_BOX)
    engine = {
        "weight": weight,
        "bias": bias,
        "dft_k": head.dft_k if head.rule_applies else None,
        "label_order": head.label_order if head.rule_applies else None,
        "epsilon": epsilon,
        "box": used_box,
        "dtype": head.model_dtype,
        "n_jobs": resolve_workers(workers, head),
    }
    # The rule's "yes" is taken as is (rule_only); the LP runs only where the rule does not decide, radii by policy.
    # Under `accelerate launch` the sets are shared over the processes and the verdicts gathered (same result).
    policy = verify_with_radius_policy(
        sets,
        radii=radii,
        radius_sample=radius_sample,
        radius_seed=radius_seed,
        num_labels=head.num_labels,
        progress=progress,
        verify=sharding.verify_label_sets_sharded,
        **engine,
    )
    answer, verdicts, population, chosen = policy.answer, policy.verdicts, policy.population, policy.chosen
    computed_for = policy.computed_for
    results = []
    for label_set, verdict in zip(label_sets, verdicts):
        if verdict.status not in VERDICTS:
            raise RuntimeError(f"Unknown verdict {verdict.status!r} for label set {list(label_set)}.")
        results.append(
            SetResult(
                tuple(label_set),
                verdict.status,
                float(verdict.radius) if verdict.radius is not None else math.nan,
                verdict.epsilon_argmaxable,
                verdict.method,
                verdict.reason or None,
            )
        )
    settings = {
        "engine": "hf_dft_head.argmax.verify_label_sets",
        "engine_version": __version__,
        **_jsonable(dataclasses.asdict(answer.settings)),
        "dft_max_abs_error": answer.dft_max_abs_error,
        "feature_bound": (
            f"|x|_inf < {used_box:g} enforced as {2 * head.width} always-on rows (exact for these features)"
            if bounded
            else None
        ),
        "radius": {
            "computed_for": computed_for,
            "lp_decided_sets": sum(v.method == "lp" for v in answer.verdicts),
            "rule_decided_argmaxable_sets": len(population),
            "sample_size": len(chosen),
            "seed": int(radius_seed) if computed_for == "sample" else None,
            "requested": radius_sample,
            "sampled_sets_sha256": _sets_digest([label_sets[i] for i in chosen]) if computed_for == "sample" else None,
            "rule": "the radius of every set the LP decides comes from its LP; of the argmaxable sets the DFT rule "
            f"decides, all while sets x labels <= {RADIUS_ROW_BUDGET:,}, else a sample of {RADIUS_ROW_BUDGET:,} // "
            "labels (at least 1) or --radius-sample sets, drawn with numpy.random.default_rng(seed) from the distinct "
            "sets ordered by (size, ids)"
            if radii
            else "none: --rule-only takes the rule's yes without an LP",
        },
    }
    return results, settings


def _jsonable(value: Any) -> Any:
    """Numbers, strings, lists and dicts only (numpy scalars converted)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def _quantiles(values: Sequence[float]) -> dict[str, float] | None:
    finite = np.asarray([v for v in values if math.isfinite(v)], dtype=np.float64)
    if finite.size == 0:
        return None
    q = np.quantile(finite, [0.0, 0.05, 0.5, 0.95, 1.0])
    return {"min": float(q[0]), "q05": float(q[1]), "median": float(q[2]), "q95": float(q[3]), "max": float(q[4])}


def summarise_results(
    results: Sequence[SetResult],
    occurrences: Counter,
    *,
    label_names: Sequence[str],
    k: int | None,
    max_examples: int = 10,
) -> dict[str, Any]:
    """Counts, shares, by-size breakdown, radius quantiles and examples of never-output sets (with names).

    ``occurrences`` maps a label set to how many examples carry it. ``k`` (the DFT head's guaranteed sparsity,
    or None) sets the "> k" share.
    """
    counts = Counter(r.verdict for r in results)
    distinct = len(results)
    argmaxable = [r for r in results if r.verdict == "argmaxable"]
    has_radius = [r for r in argmaxable if r.epsilon_argmaxable is not None]
    epsilon_ok = sum(1 for r in has_radius if r.epsilon_argmaxable)
    by_size: dict[int, list[SetResult]] = {}
    for r in results:
        by_size.setdefault(len(r.label_set), []).append(r)
    size_rows = []
    for size in sorted(by_size):
        rows = by_size[size]
        size_counts = Counter(r.verdict for r in rows)
        radii = [r.radius for r in rows if r.verdict == "argmaxable"]
        size_rows.append(
            {
                "size": size,
                "sets": len(rows),
                "argmaxable": size_counts["argmaxable"],
                "unargmaxable": size_counts["unargmaxable"],
                "undecided": size_counts["undecided"],
                "argmaxable_share": size_counts["argmaxable"] / len(rows),
                "epsilon_argmaxable": sum(1 for r in rows if r.verdict == "argmaxable" and r.epsilon_argmaxable),
                "radius_computed": sum(r.verdict == "argmaxable" and r.epsilon_argmaxable is not None for r in rows),
                "radius_quantiles": _quantiles(radii),
            }
        )
    never = sorted(
        (r for r in results if r.verdict == "unargmaxable"), key=lambda r: (-occurrences[r.label_set], r.label_set)
    )
    undecided = [r for r in results if r.verdict == "undecided"]
    examples_total = sum(occurrences[r.label_set] for r in results)
    larger = sum(1 for r in results if k is not None and len(r.label_set) > k)
    return {
        "distinct_sets": distinct,
        "examples": examples_total,
        "argmaxable": counts["argmaxable"],
        "unargmaxable": counts["unargmaxable"],
        "undecided": counts["undecided"],
        "argmaxable_share": counts["argmaxable"] / distinct if distinct else None,
        "radius_computed": len(has_radius),
        "epsilon_argmaxable": epsilon_ok,
        "epsilon_argmaxable_share": epsilon_ok / distinct if distinct and len(has_radius) == len(argmaxable) else None,
        "examples_with_unargmaxable_set": sum(occurrences[r.label_set] for r in never),
        "sets_larger_than_k": larger if k is not None else None,
        "share_larger_than_k": larger / distinct if k is not None and distinct else None,
        "radius_quantiles": _quantiles([r.radius for r in results if r.verdict == "argmaxable"]),
        "by_size": size_rows,
        "unargmaxable_examples": [
            {
                "label_ids": list(r.label_set),
                "labels": [label_names[i] for i in r.label_set],
                "occurrences": occurrences[r.label_set],
            }
            for r in never[:max_examples]
        ],
        "undecided_examples": [
            {"label_ids": list(r.label_set), "labels": [label_names[i] for i in r.label_set], "reason": r.reason}
            for r in undecided[:max_examples]
        ],
    }


def audit_head(
    head: SigmoidHead,
    gold_sets: Sequence[tuple[int, ...]],
    predicted_sets: Sequence[tuple[int, ...]] | None = None,
    *,
    epsilon: float = DEFAULT_EPSILON,
    box: float | None = None,
    radii: bool = True,
    radius_sample: int | None = None,
    radius_seed: int = 0,
    workers: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Verify the distinct gold (and predicted) label sets; returns the report's ``gold``/``predicted``/``verifier``.

    ``gold_sets`` / ``predicted_sets``: one sorted label-id tuple per example (repeats allowed: each distinct set is
    verified once, and its occurrences are counted). Both are verified in one engine call, the distinct sets ordered
    by (size, ids); ``radii``, ``radius_sample``, ``radius_seed`` and ``workers`` see :func:`verify_sets` (the
    verifier section's ``radius`` says for which sets radii were computed). A head with logit thresholds adds
    ``thresholds`` (:func:`lost_to_thresholds`).
    """
    gold_counts = Counter(tuple(sorted(s)) for s in gold_sets)
    predicted_counts = Counter(tuple(sorted(s)) for s in predicted_sets) if predicted_sets is not None else None
    distinct = sorted(set(gold_counts) | set(predicted_counts or ()), key=lambda s: (len(s), s))
    results, settings = verify_sets(
        head,
        distinct,
        epsilon=epsilon,
        box=box,
        radii=radii,
        radius_sample=radius_sample,
        radius_seed=radius_seed,
        workers=workers,
        progress=progress,
    )
    by_set = {r.label_set: r for r in results}
    epsilon_radius = epsilon * settings["box"]
    report: dict[str, Any] = {
        "verifier": {**settings, "epsilon_radius": epsilon_radius},
        "gold": summarise_results(
            [by_set[s] for s in sorted(gold_counts, key=lambda s: (len(s), s))],
            gold_counts,
            label_names=head.label_names,
            k=head.dft_k,
        ),
    }
    if predicted_counts is not None:
        report["predicted"] = summarise_results(
            [by_set[s] for s in sorted(predicted_counts, key=lambda s: (len(s), s))],
            predicted_counts,
            label_names=head.label_names,
            k=head.dft_k,
        )
    if head.thresholds_kind != "none":
        unargmaxable = [s for s in gold_counts if by_set[s].verdict == "unargmaxable"]
        report["thresholds"] = lost_to_thresholds(head, unargmaxable, gold_counts, workers=workers)
    return report


def lost_to_thresholds(
    head: SigmoidHead, unargmaxable: Sequence[tuple[int, ...]], occurrences: Counter, *, workers: int | None = None
) -> dict[str, Any]:
    """Which gold sets the thresholds cost: unargmaxable with them (``unargmaxable``), argmaxable for the raw head.

    A DFT head with a uniform threshold loses none (the threshold moves ``x_0`` only), so nothing is re-verified;
    otherwise the raw head (bias ``b``, no thresholds) is verified on those sets, by the DFT rule where it applies.
    """
    record: dict[str, Any] = {"kind": head.thresholds_kind, "rule_decides": head.rule_applies}
    if head.rule_applies:
        lost, undecided = [], 0
        record["raw_head_comparison"] = "none needed: a uniform threshold is absorbed by G's constant column"
    else:
        raw = dataclasses.replace(head, logit_thresholds=None)
        results, _ = verify_sets(
            raw, sorted(unargmaxable, key=lambda s: (len(s), s)), radii=False, workers=workers, progress=False
        )
        lost = [r.label_set for r in results if r.verdict == "argmaxable"]
        undecided = sum(1 for r in results if r.verdict == "undecided")
        record["raw_head_comparison"] = "gold sets unargmaxable with the thresholds, verified for the raw head"
    lost.sort(key=lambda s: (-occurrences[s], len(s), s))
    return {
        **record,
        "lost_gold_sets": len(lost),
        "examples_with_lost_set": sum(occurrences[s] for s in lost),
        "raw_head_undecided": undecided,
        "lost_examples": [
            {"label_ids": list(s), "labels": [head.label_names[i] for i in s], "occurrences": occurrences[s]}
            for s in lost[:10]
        ],
    }


def audit_checkpoint(
    model_path: str | os.PathLike,
    spec: data.DataSpec,
    options: VerifierOptions | None = None,
    *,
    assume_multi_label: bool = False,
    progress: bool = True,
    loaded: tuple[Any, Any] | None = None,
) -> dict[str, Any]:
    """The full audit report of a checkpoint on one data split (JSON-ready dict, deterministic: no dates).

    ``spec`` names the split (:func:`dataset_spec`), ``options`` how the engine runs (default
    :class:`VerifierOptions`). ``loaded`` passes an already loaded ``(model, tokenizer)`` for ``model_path``.
    The report holds the gold and predicted sets' verdicts and, with predictions, the quality metrics.
    """
    options = options or VerifierOptions()
    predictions, batch_size, max_length = options.predictions, options.batch_size, options.max_length
    model, tokenizer = (
        loaded if loaded is not None else load_checkpoint(model_path, assume_multi_label=assume_multi_label)
    )
    head = find_sigmoid_head(model, assume_multi_label=assume_multi_label)
    split = load_audit_split(spec, head.label_names)
    predicted = (
        predict_label_sets(
            model,
            tokenizer,
            split.texts,
            gold_sets=split.label_sets,
            batch_size=batch_size,
            max_length=max_length,
            progress=progress,
        )
        if predictions
        else None
    )
    figures = audit_head(
        head,
        split.label_sets,
        predicted.label_sets if predicted is not None else None,
        epsilon=options.epsilon,
        box=options.box,
        radii=not options.rule_only,
        radius_sample=options.radius_sample,
        radius_seed=options.radius_seed,
        workers=options.workers,
        progress=progress,
    )
    return {
        "model": {"path": str(model_path), "architecture": type(model).__name__, "head": head.describe()},
        "dataset": split.describe(),
        "prediction": {
            "rule": "label i predicted when sigmoid(z_i) > 0.5 (logit > 0)"
            if head.logit_thresholds is None
            else f"label i predicted when z_i > logit_thresholds[i] of config.json ({head.thresholds_kind})",
            "batch_size": batch_size,
            "max_length": max_length,
        }
        if predictions
        else None,
        "quality": predicted.quality if predicted is not None else None,
        **figures,
    }


# ----------------------------------------------------------------------------------------------------------------
# Output: summary, plot, files
# ----------------------------------------------------------------------------------------------------------------


def format_summary(report: dict[str, Any]) -> str:
    """A short plain-text summary of an audit report, naming the labels of sets the model can never output."""
    head = report["model"]["head"]
    lines = [
        f"Model: {report['model']['path']} ({report['model']['architecture']}, head {head['kind']}, "
        f"n={head['num_labels']} labels, decided in: {head['space']})",
        f"Data: {report['dataset']['dataset']} split={report['dataset']['split']} "
        f"({report['dataset']['examples']} examples); box |x|_inf <= {report['verifier']['box']:g}, "
        f"epsilon radius {report['verifier']['epsilon_radius']:.3g}",
    ]
    radius = report["verifier"].get("radius") or {}
    if radius.get("computed_for") == "sample":
        lines.append(
            f"Radii of the sets the DFT rule decides: a sample of {radius['sample_size']} of "
            f"{radius['rule_decided_argmaxable_sets']} (seed {radius['seed']}; --radius-sample sets the size)"
        )
    elif radius.get("computed_for") == "none" and radius.get("rule_decided_argmaxable_sets"):
        lines.append("Radii of the sets the DFT rule decides: not computed")
    for part in ("gold", "predicted"):
        figures = report.get(part)
        if not figures:
            continue
        lines.append(
            f"{part.capitalize()} label sets: {figures['distinct_sets']} distinct; "
            f"{figures['argmaxable']} argmaxable, {figures['unargmaxable']} never outputtable, "
            f"{figures['undecided']} undecided"
            + (
                f" ({figures['examples_with_unargmaxable_set']} of {figures['examples']} examples carry a set the "
                "model can never output)"
                if part == "gold"
                else ""
            )
        )
        if figures["epsilon_argmaxable_share"] is not None:
            lines.append(f"  epsilon-argmaxable: {figures['epsilon_argmaxable']} of {figures['distinct_sets']}")
        elif figures["radius_computed"]:
            lines.append(
                f"  epsilon-argmaxable: {figures['epsilon_argmaxable']} of the {figures['radius_computed']} argmaxable "
                "sets whose radius was computed"
            )
        if figures.get("share_larger_than_k") is not None:
            lines.append(f"  sets with more than k={head['dft_k']} labels: {figures['sets_larger_than_k']}")
        for example in figures["unargmaxable_examples"][:5]:
            lines.append(f"  never output: {{{', '.join(example['labels'])}}} ({example['occurrences']} examples)")
        for example in figures["undecided_examples"][:3]:
            lines.append(f"  undecided: {{{', '.join(example['labels'])}}}: {example['reason']}")
    lost = report.get("thresholds")
    if lost:
        lines.append(
            f"Logit thresholds ({lost['kind']}): {lost['lost_gold_sets']} distinct gold sets the raw head can output "
            f"are never output with them ({lost['examples_with_lost_set']} examples)"
        )
        for example in lost["lost_examples"][:5]:
            lines.append(f"  lost: {{{', '.join(example['labels'])}}} ({example['occurrences']} examples)")
    return "\n".join(lines)


def plot_series(report: dict[str, Any]) -> dict[str, list]:
    """The numbers the figure shows: argmaxable share by label-set size, for gold (and predicted) sets."""
    series = {}
    for part in ("gold", "predicted"):
        figures = report.get(part)
        if figures:
            series[part] = [[row["size"], row["argmaxable_share"], row["sets"]] for row in figures["by_size"]]
    return series


def write_plot(report: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write a PNG bar chart of the argmaxable share by label-set size (metadata-free, so deterministic bytes)."""
    series = plot_series(report)
    # A bare Figure (Agg canvas), not pyplot: no global backend or figure registry is touched.
    figure = Figure(figsize=(7, 3.6), dpi=100)
    axis = figure.subplots()
    width = 0.4 if len(series) > 1 else 0.8
    for offset, (part, rows) in enumerate(series.items()):
        sizes = np.array([row[0] for row in rows], dtype=float)
        shares = [row[1] for row in rows]
        shift = (offset - (len(series) - 1) / 2) * width
        bars = axis.bar(sizes + shift, shares, width=width, label=f"{part} sets")
        if part == "gold":  # how many distinct sets each bar stands for (a 0 share is then visibly not "no data")
            axis.bar_label(bars, labels=[str(row[2]) for row in rows], fontsize=6, padding=1)
    head = report["model"]["head"]
    if head.get("dft_k") is not None:
        axis.axvline(head["dft_k"] + 0.5, color="grey", linestyle="--", linewidth=1, label=f"k = {head['dft_k']}")
    axis.set_xlabel("label-set size")
    axis.set_ylabel("argmaxable share of distinct sets")
    axis.text(0.01, 0.98, "numbers: distinct gold sets of that size", transform=axis.transAxes, fontsize=6, va="top")
    axis.set_ylim(0, 1.12)
    axis.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    axis.set_title(f"Argmaxability on {Path(str(report['dataset']['dataset'])).name} / {report['dataset']['split']}")
    axis.legend(loc="upper right", fontsize=8)
    figure.tight_layout()
    path = Path(path)
    # Software/date metadata off: the same numbers give the same bytes, so a certificate can hash the file.
    _atomic_write(path, lambda handle: figure.savefig(handle, format="png", metadata={"Software": None}))
    return path


def _atomic_write(path: Path, write) -> None:
    """Write through a temporary file in the same folder and ``os.replace`` it: never leaves a half file.

    The file gets the mode a plain ``open(path, "w")`` would give it (the old file's, else 0o666 less the umask),
    not the 0600 of the temporary file: a certificate is meant to be read by others. A file system error becomes
    an :class:`OutputLocationError` (a ValueError) naming the path.
    """
    try:
        mode = new_file_mode(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = tempfile.NamedTemporaryFile(
            "wb", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False
        )
    except OSError as error:
        raise OutputLocationError(
            f"cannot write {path}: {error.strerror or error}; make its folder writable or write elsewhere."
        ) from None
    try:
        with handle:
            write(handle)
        os.chmod(handle.name, mode)
        os.replace(handle.name, path)
    except BaseException as error:
        Path(handle.name).unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise OutputLocationError(f"cannot write {path}: {error.strerror or error}.") from None
        raise


def write_json(data: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``data`` as indented JSON atomically (temp file + ``os.replace``)."""
    text = json.dumps(_jsonable(data), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    path = Path(path)
    _atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))
    return path
