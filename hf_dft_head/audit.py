"""Audit any Hugging Face multi-label sigmoid checkpoint: which label sets in the data can it never output?

``hf-dft audit MODEL --dataset DATA [--split test]`` loads the checkpoint (a DFT model of this package, or a stock
``AutoModelForSequenceClassification`` trained with ``problem_type="multi_label_classification"``), finds the last
affine map of its sigmoid head in that head's *own* input space, and runs the argmaxability engine
(:mod:`hf_dft_head.argmax`) on

* the distinct gold label sets of one split of the data, and
* the distinct label sets the model predicts on that split (sigmoid > 0.5, i.e. logit > 0).

The report is a JSON-ready dict; its text summary and PNG figure are :mod:`hf_dft_head.audit_report`'s, the head is
found by :mod:`hf_dft_head.sigmoid_head` and the verdicts are summarised by :mod:`hf_dft_head.argmax.summary`.

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
import os
from collections import Counter, deque
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from . import data, sharding

# DEFAULT_EPSILON: a set is epsilon-argmaxable when its Chebyshev radius is at least epsilon * box.
# DEFAULT_BOX: the box used when nothing bounds the head's input features (the LP is homogeneous without one).
from .argmax import ARGMAXABLE, DEFAULT_BOX, DEFAULT_EPSILON, RULE_REJECTED_ROWS, UNARGMAXABLE, UNDECIDED, Verdict
from .argmax.radii import RADIUS_ROW_BUDGET, RadiusPolicyResult, sets_digest, verify_with_radius_policy
from .argmax.summary import summarise_audit_verdicts
from .checkpoints import load_checkpoint
from .metrics.quality import QualityAccumulator, label_ids_by_row, top_k_label_ids
from .output_checks import jsonable
from .prediction import decision_thresholds
from .sigmoid_head import SigmoidHead, find_sigmoid_head
from .version import __version__

logger = logging.getLogger(__name__)

VERDICTS = (ARGMAXABLE, UNARGMAXABLE, UNDECIDED)
#: Cut-offs of the quality metrics recorded with an audit (P@k, R@k, F1@k, nDCG@k).
QUALITY_KS = (1, 3, 5)
#: Threads that threshold and rank the logit batches of a prediction pass (at most the cores available): at 1M labels
#: that is ~0.6 s per batch of 32, the forward pass 0.1 s.
PREDICTION_THREADS = 4


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
            f"{RADIUS_ROW_BUDGET:,}, else {RADIUS_ROW_BUDGET:,} // labels: none above {RADIUS_ROW_BUDGET:,} labels; "
            "for k > 10 the budget is (21 / (2k+1))^3 of that, as the LP costs more)"
        },
    )
    radius_seed: int = field(default=0, metadata={"help": "seed of the radius sample (see --radius-sample)"})
    rule_rejected_rows: int = field(
        default=RULE_REJECTED_ROWS,
        metadata={
            "help": "pure DFT heads with more labels: a set the rule rejects whose 2k+2-row certificate fails for the "
            "stored G is tried by an LP over this many rows around it, not all n (its proofs hold for the whole head; "
            f"what it cannot prove stays undecided); 0: all rows (default {RULE_REJECTED_ROWS:,})"
        },
    )
    predictions: bool = field(
        default=True,
        metadata={"help": "also verify the label sets the model predicts on the split (--no-predictions: gold only)"},
    )
    workers: int | None = field(
        default=None,
        metadata={
            "help": "processes for the LP verifier; results do not depend on it (default: the cores available; "
            "none are started when no set needs an LP)"
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
        if self.rule_rejected_rows < 0:
            raise ValueError(f"--rule-rejected-rows must be >= 0, got {self.rule_rejected_rows} (0: all rows).")

    def recorded(self) -> dict[str, Any]:
        """The options that decide the results (``workers`` does not), JSON-ready."""
        return {key: value for key, value in dataclasses.asdict(self).items() if key != "workers"}


def available_cores() -> int:
    """The CPU cores this process may run on (its affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # no sched_getaffinity (macOS, Windows)
        return os.cpu_count() or 1


def resolve_workers(workers: int | None) -> int:
    """``workers`` if given, else every available core.

    The engine starts worker processes only when more than one set needs an LP: for a pure DFT head, whose sets the
    rule decides in-process in microseconds, those are the radius sample and the sets the rule rejects without a
    ``2k + 2``-row proof (97 sets at 1M labels, 14 s on one core, 8.6 s on two). Under ``accelerate launch`` the cores
    are shared by the launched processes of the machine (:func:`hf_dft_head.sharding.cores_per_process`).
    """
    if workers is not None:
        return int(workers)
    return sharding.cores_per_process(available_cores())


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
    the metrics' statistics (:class:`~hf_dft_head.metrics.quality.QualityAccumulator`), and is dropped. Batches are
    thresholded and ranked by up to ``PREDICTION_THREADS`` threads (the cores available) while the model computes the
    next; their statistics are added in batch order, so the report does not depend on the thread count.
    """
    thresholds = decision_thresholds(model.config)[0]
    accumulator = QualityAccumulator(int(model.config.num_labels), ks=QUALITY_KS) if gold_sets is not None else None
    top_k = max(QUALITY_KS) if accumulator is not None else 0

    def outputs(logits: np.ndarray) -> tuple[list[tuple[int, ...]], np.ndarray | None]:
        """One batch's predicted sets and top-k ids: the O(b n) work, in a worker thread (numpy releases the GIL)."""
        batch_sets = [tuple(ids.tolist()) for ids in label_ids_by_row(logits > thresholds)]  # what the model outputs
        return batch_sets, top_k_label_ids(logits, top_k) if top_k else None

    predicted: list[tuple[int, ...]] = []

    def take(batch_sets: list[tuple[int, ...]], top: np.ndarray | None) -> None:
        # In batch order, so the metrics are summed as in one pass; the threshold metrics are those of what the
        # model predicts (its logit thresholds, if any), as ``QualityAccumulator.add_ranked`` reads them.
        if accumulator is not None:
            gold = [list(s) for s in gold_sets[len(predicted) : len(predicted) + len(batch_sets)]]
            accumulator.add_ranked(top, gold, batch_sets)
        predicted.extend(batch_sets)

    # At most `workers` batches in flight beyond the one being computed: memory stays a few (b, n) batches.
    workers = max(1, min(available_cores(), PREDICTION_THREADS))
    batches = logit_batches(model, tokenizer, texts, batch_size=batch_size, max_length=max_length, progress=progress)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending: deque = deque()
        for logits in batches:
            pending.append(pool.submit(outputs, logits))
            if len(pending) > workers:
                take(*pending.popleft().result())
        while pending:
            take(*pending.popleft().result())
    return Predictions(predicted, accumulator.report() if accumulator is not None else None)


# ----------------------------------------------------------------------------------------------------------------
# Running the engine and summarising
# ----------------------------------------------------------------------------------------------------------------


def verify_sets(
    head: SigmoidHead,
    label_sets: Sequence[tuple[int, ...]],
    options: VerifierOptions | None = None,
    *,
    progress: bool = True,
) -> tuple[list[Verdict], dict[str, Any]]:
    """Run the argmaxability engine on ``label_sets`` for ``head``; returns per-set verdicts and the settings used.

    ``options`` (default :class:`VerifierOptions`) gives ``epsilon``, ``box``, the radii (``rule_only`` off:
    ``radii`` below), ``radius_sample``, ``radius_seed`` and ``workers`` (the engine's ``n_jobs``); the predictions
    options do not apply here. Verdict ``i`` is the engine's for ``label_sets[i]``, with ``labels`` that set (the
    always-on box rows below are not part of it).

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
    options = options or VerifierOptions()
    epsilon, box, radii = options.epsilon, options.box, not options.rule_only
    radius_sample, radius_seed, workers = options.radius_sample, options.radius_seed, options.workers
    bounded = box is None and head.box is not None
    weight, bias, sets, used_box = _engine_problem(head, label_sets, box, bounded)
    engine = {
        "weight": weight,
        "bias": bias,
        "dft_k": head.dft_k if head.rule_applies else None,
        "label_order": head.label_order if head.rule_applies else None,
        "epsilon": epsilon,
        "box": used_box,
        "dtype": head.model_dtype,
        "n_jobs": resolve_workers(workers),
        "rule_rejected_rows": options.rule_rejected_rows,
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
    results = []
    for label_set, verdict in zip(label_sets, policy.verdicts):
        if verdict.status not in VERDICTS:
            raise RuntimeError(f"Unknown verdict {verdict.status!r} for label set {list(label_set)}.")
        results.append(dataclasses.replace(verdict, labels=tuple(label_set)))
    return results, _verifier_settings(head, label_sets, options, policy, used_box, bounded)


def _engine_problem(
    head: SigmoidHead, label_sets: Sequence[tuple[int, ...]], box: float | None, bounded: bool
) -> tuple[np.ndarray, np.ndarray, list[list[int]], float]:
    """``(weight, bias, sets, box)`` the engine decides: the head as it predicts (``(n, m)``, ``(n,)``), and when
    ``bounded`` (an exact feature bound, no ``box`` override) ``2m`` always-on rows ``1 -+ x_j > 0`` (``(n + 2m, m)``)
    switched on in every set (see :func:`verify_sets`)."""
    weight, bias = head.decision_head()
    sets = [list(s) for s in label_sets]
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
    return weight, bias, sets, used_box


def _verifier_settings(
    head: SigmoidHead,
    label_sets: Sequence[tuple[int, ...]],
    options: VerifierOptions,
    policy: RadiusPolicyResult,
    used_box: float,
    bounded: bool,
) -> dict[str, Any]:
    """The settings :func:`verify_sets` used and the radius policy it followed, as the audit records them."""
    radii, radius_sample, radius_seed = not options.rule_only, options.radius_sample, options.radius_seed
    answer, population, chosen = policy.answer, policy.population, policy.chosen
    computed_for = policy.computed_for
    return {
        "engine": "hf_dft_head.argmax.verify_label_sets",
        "engine_version": __version__,
        **jsonable(dataclasses.asdict(answer.settings)),
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
            "sampled_sets_sha256": sets_digest([label_sets[i] for i in chosen]) if computed_for == "sample" else None,
            "rule": "the radius of every set the LP decides comes from its LP; of the argmaxable sets the DFT rule "
            f"decides, all while sets x labels <= {RADIUS_ROW_BUDGET:,}, else a sample of {RADIUS_ROW_BUDGET:,} // "
            "labels (none above that many labels), both budgets times (21 / (2k+1))^3 for k > 10, or --radius-sample "
            "sets, drawn with numpy.random.default_rng(seed) from the distinct sets ordered by (size, ids)"
            if radii
            else "none: --rule-only takes the rule's yes without an LP",
        },
    }


def audit_head(
    head: SigmoidHead,
    gold_sets: Sequence[tuple[int, ...]],
    predicted_sets: Sequence[tuple[int, ...]] | None = None,
    options: VerifierOptions | None = None,
    *,
    progress: bool = True,
) -> dict[str, Any]:
    """Verify the distinct gold (and predicted) label sets; returns the report's ``gold``/``predicted``/``verifier``.

    ``gold_sets`` / ``predicted_sets``: one sorted label-id tuple per example (repeats allowed: each distinct set is
    verified once, and its occurrences are counted). Both are verified in one engine call, the distinct sets ordered
    by (size, ids); ``options`` (default :class:`VerifierOptions`): see :func:`verify_sets` (the verifier section's
    ``radius`` says for which sets radii were computed). A head with logit thresholds adds
    ``thresholds`` (:func:`lost_to_thresholds`).
    """
    gold_counts = Counter(tuple(sorted(s)) for s in gold_sets)
    predicted_counts = Counter(tuple(sorted(s)) for s in predicted_sets) if predicted_sets is not None else None
    distinct = sorted(set(gold_counts) | set(predicted_counts or ()), key=lambda s: (len(s), s))
    options = options or VerifierOptions()
    results, settings = verify_sets(head, distinct, options, progress=progress)
    by_set = {r.labels: r for r in results}
    epsilon_radius = options.epsilon * settings["box"]
    report: dict[str, Any] = {
        "verifier": {**settings, "epsilon_radius": epsilon_radius},
        "gold": summarise_audit_verdicts(
            [by_set[s] for s in sorted(gold_counts, key=lambda s: (len(s), s))],
            gold_counts,
            label_names=head.label_names,
            k=head.dft_k,
        ),
    }
    if predicted_counts is not None:
        report["predicted"] = summarise_audit_verdicts(
            [by_set[s] for s in sorted(predicted_counts, key=lambda s: (len(s), s))],
            predicted_counts,
            label_names=head.label_names,
            k=head.dft_k,
        )
    if head.thresholds_kind != "none":
        unargmaxable = [s for s in gold_counts if by_set[s].status == UNARGMAXABLE]
        report["thresholds"] = lost_to_thresholds(head, unargmaxable, gold_counts, workers=options.workers)
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
        # The raw head's verdicts only (no radii), with the default box: not the options' epsilon or box.
        no_radii = VerifierOptions(rule_only=True, workers=workers)
        results, _ = verify_sets(raw, sorted(unargmaxable, key=lambda s: (len(s), s)), no_radii, progress=False)
        lost = [r.labels for r in results if r.status == ARGMAXABLE]
        undecided = sum(1 for r in results if r.status == UNDECIDED)
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
        head, split.label_sets, predicted.label_sets if predicted is not None else None, options, progress=progress
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
