"""`evaluate` module: multi-label quality (P@k, R@k, F1@k, nDCG@k, micro/macro F1, exact match), offline.

Load it by path, with no Hub access::

    import evaluate
    metric = evaluate.load("<path to hf_dft_head/metrics/multilabel_quality>")  # config "multi_hot"
    metric.compute(predictions=logit_rows, references=multi_hot_rows, ks=(1, 3, 5))

The maths lives in ``hf_dft_head.metrics.quality``. ``evaluate`` copies only this file into
``$HF_HOME/modules``, so a relative import could not find it; the absolute import below declares
``hf_dft_head`` as a dependency, which ``evaluate`` checks when loading: the package must be importable
(installed, or on ``PYTHONPATH``).
"""

import datasets
import evaluate
import numpy as np

from hf_dft_head.metrics.quality import multi_hot_from_label_ids, multilabel_quality_report

_DESCRIPTION = """
Multi-label classification quality from per-label scores. Ranking metrics (ties broken by label id):
P@k = |top_k ∩ y| / k, R@k = |top_k ∩ y| / |y|, F1@k = harmonic mean of mean P@k and mean R@k (as in
Grivas, Vergari & Lopez, AAAI 2024), nDCG@k with binary gains. Threshold metrics (a label is predicted when
its probability exceeds `threshold`): micro F1, macro F1 (scikit-learn's zero_division semantics) and exact
match. Rows with no gold label score 0 in the @k metrics unless empty_rows="skip".
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: one row of n real scores per example (logits by default; probabilities with
        scores_are_logits=False).
    references: config "multi_hot" (default): one row of n 0/1 values per example; config "label_ids": one
        list of gold label ids in [0, n) per example (may be empty).
    ks: cut-offs for the @k metrics, default (1, 3, 5).
    threshold: probability cut for micro_f1, macro_f1 and exact_match, strictly in (0, 1); default 0.5 (logit 0).
    scores_are_logits: True (default) if predictions are logits, False if probabilities.
    empty_rows: "zero" (default) or "skip": how @k metrics treat examples with no gold label.
    zero_division: 0.0 (default), 1.0 or nan: F1 of a label never gold and never predicted.
Returns:
    A flat dict of floats: "p@k", "r@k", "f1@k", "ndcg@k" for each k, "micro_f1", "macro_f1", "exact_match".
Examples:
    >>> metric = evaluate.load(QUALITY_METRIC)
    >>> metric.compute(predictions=[[2.0, -1.0, 0.5]], references=[[1, 0, 0]], ks=(1,))["p@1"]
    1.0
"""

_CITATION = """
@inproceedings{grivas2024taming,
  title     = {Taming the Sigmoid Bottleneck: Provably Argmaxable Sparse Multi-Label Classification},
  author    = {Grivas, Andreas and Vergari, Antonio and Lopez, Adam},
  booktitle = {Proceedings of the AAAI Conference on Artificial Intelligence},
  year      = {2024}
}
"""

_REFERENCE_FEATURES = {
    # float so that a wrong value such as 0.5 or 2 reaches the 0/1 check instead of being cast away.
    "multi_hot": datasets.Sequence(datasets.Value("float32")),
    "label_ids": datasets.Sequence(datasets.Value("int64")),
}


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class MultilabelQuality(evaluate.Metric):
    """Multi-label quality metrics over score rows; config "multi_hot" (default) or "label_ids"."""

    def _info(self) -> evaluate.MetricInfo:
        config = self.config_name if self.config_name not in (None, "default") else "multi_hot"
        if config not in _REFERENCE_FEATURES:
            raise ValueError(
                f"config_name must be one of {sorted(_REFERENCE_FEATURES)}, got {self.config_name!r}: "
                '"multi_hot" when references are 0/1 rows, "label_ids" when they are lists of label ids.'
            )
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    # float64 so that float64 scores keep their order (a float32 cast could create ties).
                    "predictions": datasets.Sequence(datasets.Value("float64")),
                    "references": _REFERENCE_FEATURES[config],
                }
            ),
            reference_urls=["https://arxiv.org/abs/2310.10443"],
        )

    def _compute(
        self,
        predictions,
        references,
        ks=(1, 3, 5),
        threshold=0.5,
        scores_are_logits=True,
        empty_rows="zero",
        zero_division=0.0,
    ) -> dict:
        """predictions: B rows of n scores; references: B multi-hot rows or B label-id lists (per config)."""
        try:
            scores = np.asarray(predictions, dtype=np.float64)
        except ValueError:
            raise ValueError("predictions rows have different lengths; every row needs one score per label.") from None
        if scores.ndim != 2:
            raise ValueError(f"predictions must be B rows of n scores, got an array of shape {scores.shape}.")
        if self.config_name == "label_ids":
            targets = multi_hot_from_label_ids(references, num_labels=scores.shape[1])
        else:
            try:
                targets = np.asarray(references)
            except ValueError:
                raise ValueError(
                    'references rows have different lengths; for lists of label ids load the "label_ids" config.'
                ) from None
        return multilabel_quality_report(
            scores,
            targets,
            ks=ks,
            threshold=threshold,
            scores_are_logits=scores_are_logits,
            empty_rows=empty_rows,
            zero_division=zero_division,
        )
