"""`evaluate` module: which label sets (gold and predicted) can a sigmoid multi-label head output at all?

Load it by path, offline::

    import evaluate
    from hf_dft_head.metrics import ARGMAXABILITY_METRIC
    metric = evaluate.load(ARGMAXABILITY_METRIC)                 # label-id lists
    metric = evaluate.load(ARGMAXABILITY_METRIC, "multi_hot")    # 0/1 rows
    metric.compute(predictions=pred_sets, references=gold_sets, weight=W, bias=b, dft_k=None)

The engine is ``hf_dft_head.argmax``. ``evaluate`` copies only this file into ``$HF_HOME/modules``,
so the import below is absolute; ``hf_dft_head`` must be importable (installed or on ``PYTHONPATH``).
"""

import datasets
import evaluate
import numpy as np

from hf_dft_head.argmax import DEFAULT_BOX, DEFAULT_EPSILON, as_label_sets
from hf_dft_head.argmax.radii import RADIUS_ROW_BUDGET, verify_with_radius_policy
from hf_dft_head.argmax.summary import summarize_verdicts

_DESCRIPTION = """
Argmaxability of label sets under a sigmoid multi-label head z = W x + b (W: n labels x m inputs, in the
head's own input space). A label set S is argmaxable when some input x gives z_i > 0 exactly for i in S.
Every verdict is proven in exact arithmetic on the float64 head: a witness x whose signed logits are proven
positive (also checked in the model's dtype), or a Farkas certificate checked exactly; sets the engine cannot
prove either way are counted as undecided. A set is epsilon-argmaxable when the
Chebyshev radius of its region inside the box |x|_inf <= box is at least epsilon * box.
For a DFT head (dft_k given, W = [G | S]) the exact sign-change rule of Grivas et al. (AAAI 2024) is used.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: config "default": one list of predicted label ids per example (may be empty);
        config "multi_hot": one row of n 0/1 values per example.
    references: the gold label sets, in the same form.
    model: a loaded multi-label sigmoid model (ours, or a stock AutoModelForSequenceClassification): its head
        gives weight, bias, dft_k and dtype (see hf_dft_head.sigmoid_head.find_sigmoid_head). Or pass weight/bias:
    weight: (n, m) effective head matrix (numpy array or tensor), when no model is given.
    bias: (n,) head bias, or None.
    dft_k: the first 2k+1 columns of weight are the Gale matrix G(n, k) (checked): use the exact rule.
    label_order: (n,) circle position of each label, for the rule.
    k: size threshold of the buckets "size_le_k" / "size_gt_k"; default dft_k; None: one bucket per size.
    epsilon: relative radius threshold (default 1e-6); box: B (default 1e4).
    dtype: the model's dtype for witness checks (default "float32").
    exact_radius: solve every LP to optimality (radius quantiles exact; otherwise proven lower bounds).
    radii: which sets get a Chebyshev radius (the policy of hf-dft audit and certify). Every set the LP decides
        gets its radius from its own LP. Of the argmaxable sets a DFT head's sign-change rule decides (in
        microseconds, where a radius is one LP over all n rows), "auto" (default) computes all while
        distinct sets x num_labels <= RADIUS_ROW_BUDGET (250,000), else a random sample of
        RADIUS_ROW_BUDGET // num_labels sets (none above 250,000 labels), the budget times (21 / (2k+1))^3 for
        k > 10 (a wider LP costs more); "all" computes every radius; "none"
        none; an integer s >= 0 a sample of s sets. The sample is drawn with numpy.random.default_rng(radius_seed)
        from the distinct sets in order of first appearance (references first). Sets without a radius count as not
        epsilon-argmaxable in the "epsilon_argmaxable" shares (a lower bound then) and are left out of the
        radius quantiles; "radius_computed_for" ("all", "sample", "none") and "radius_sets" say which.
    radius_seed: seed of the radius sample (default 0).
    n_jobs: worker processes; progress: show a progress bar.
Returns:
    A flat dict; for each of "references_" and "predictions_": "sets" (distinct sets), "argmaxable" and
    "epsilon_argmaxable" (shares of distinct sets), "unargmaxable_sets", "undecided_sets",
    "argmaxable_examples" (share of examples), the same per size bucket, "relative_radius_q05".."q95";
    plus "epsilon", "box", "k", "num_labels", "dim", "radius_exact", "radius_computed_for" and "radius_sets"
    (rule-decided argmaxable sets whose radius was computed).
Examples:
    >>> metric = evaluate.load(ARGMAXABILITY_METRIC)
    >>> W = np.array([[1.0], [1.0], [1.0]]); b = -np.array([1.0, 2.0, 3.0])
    >>> metric.compute(predictions=[[0]], references=[[0, 2]], weight=W, bias=b)["references_argmaxable"]
    0.0
"""

_CITATION = """
@inproceedings{grivas2024taming,
  title     = {Taming the Sigmoid Bottleneck: Provably Argmaxable Sparse Multi-Label Classification},
  author    = {Grivas, Andreas and Vergari, Antonio and Lopez, Adam},
  booktitle = {Proceedings of the AAAI Conference on Artificial Intelligence},
  year      = {2024}
}
"""

_FEATURES = {
    "default": datasets.Sequence(datasets.Value("int64")),
    # float so that a wrong value such as 0.5 or 2 reaches the 0/1 check instead of being cast away.
    "multi_hot": datasets.Sequence(datasets.Value("float32")),
}


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Argmaxability(evaluate.Metric):
    """Argmaxable shares of gold and predicted label sets; config "default" (label ids) or "multi_hot"."""

    def _info(self) -> evaluate.MetricInfo:
        config = self.config_name or "default"
        if config not in _FEATURES:
            raise ValueError(
                f"config_name must be one of {sorted(_FEATURES)}, got {self.config_name!r}: "
                '"default" for lists of label ids, "multi_hot" for 0/1 rows.'
            )
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": _FEATURES[config], "references": _FEATURES[config]}),
            reference_urls=["https://arxiv.org/abs/2310.10443"],
        )

    def _compute(
        self,
        predictions,
        references,
        model=None,
        weight=None,
        bias=None,
        dft_k=None,
        label_order=None,
        k=None,
        epsilon=DEFAULT_EPSILON,
        box=DEFAULT_BOX,
        dtype="float32",
        exact_radius=False,
        radii="auto",
        radius_seed=0,
        n_jobs=1,
        progress=False,
    ) -> dict:
        """Verify every distinct set once (gold and predicted together), then summarise each side."""
        if model is not None:
            if weight is not None:
                raise ValueError("pass either model= or weight=/bias=, not both.")
            # Imported here: only callers that pass a transformers model pay for the transformers import.
            from hf_dft_head.sigmoid_head import find_sigmoid_head

            head = find_sigmoid_head(model)
            weight, bias, dtype = head.weight, head.bias, head.model_dtype
            dft_k = head.dft_k if dft_k is None else dft_k
        if weight is None:
            raise ValueError(
                "pass the head as compute(..., model=model) or compute(..., weight=W, bias=b): W is (num_labels, dim)."
            )
        weight = np.asarray(weight, dtype=np.float64)
        if weight.ndim != 2:
            raise ValueError(f"weight must be 2-D (num_labels, dim), got shape {weight.shape}.")
        num_labels = weight.shape[0]
        multi_hot = self.config_name == "multi_hot"
        sides = {}
        for name, rows in (("references", references), ("predictions", predictions)):
            try:
                sides[name] = as_label_sets(rows, num_labels, multi_hot=multi_hot).to_lists()
            except ValueError as error:
                raise ValueError(f"{name}: {error}") from None
        distinct = list(dict.fromkeys(tuple(s) for rows in sides.values() for s in rows))
        result = verify_with_radius_policy(
            [list(s) for s in distinct],
            **_radius_policy(radii, len(distinct)),
            radius_seed=radius_seed,
            exact_radius=exact_radius,
            weight=weight,
            bias=bias,
            dft_k=dft_k,
            label_order=label_order,
            epsilon=epsilon,
            box=box,
            dtype=dtype,
            n_jobs=n_jobs,
            progress=progress,
        )
        verdict_of = dict(zip(distinct, result.verdicts))
        bucket_k = dft_k if k is None else k
        out = {
            "num_labels": num_labels,
            "dim": weight.shape[1],
            "epsilon": float(epsilon),
            "box": float(box),
            "k": bucket_k,
            "radius_exact": bool(exact_radius),
            "radius_computed_for": result.computed_for,
            "radius_sets": len(result.chosen),
        }
        for name, rows in sides.items():
            out.update(summarize_verdicts(rows, verdict_of, k=bucket_k, prefix=f"{name}_"))
        return out


def _radius_policy(radii, distinct_sets: int) -> dict:
    """``radii`` ("auto", "all", "none" or an integer sample size) as ``verify_with_radius_policy`` arguments."""
    if isinstance(radii, str) and radii in ("auto", "all", "none"):
        return {"radii": radii != "none", "radius_sample": {"auto": None, "all": distinct_sets}.get(radii, 0)}
    if isinstance(radii, (int, np.integer)) and not isinstance(radii, bool) and radii >= 0:
        return {"radii": True, "radius_sample": int(radii)}
    raise ValueError(
        f'radii must be "auto" (all radii while sets x labels <= {RADIUS_ROW_BUDGET:,}, else a seeded sample), '
        f'"all", "none" or a sample size >= 0, got {radii!r}.'
    )
