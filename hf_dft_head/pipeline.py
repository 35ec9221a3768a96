"""The ``multi-label-classification`` pipeline: text in, predicted label set (names, scores, guarantee flag) out.

Importing ``hf_dft_head`` registers it with transformers' pipeline registry, so

    import hf_dft_head
    from transformers import pipeline
    classify = pipeline("multi-label-classification", model="a-checkpoint-folder-or-hub-id")
    classify("The bridge collapsed after the flood")
    # {'labels': ['floods', 'infrastructure_related'], 'scores': [0.91, 0.62], 'within_guarantee': True}

works for checkpoints of the three head kinds and for any stock multi-label ``AutoModelForSequenceClassification``
(``within_guarantee`` is ``None`` for heads without a guarantee). The decision is that of
:func:`hf_dft_head.prediction.decide_label_sets`: label ``i`` is predicted iff its logit exceeds its threshold
(``threshold`` probability, else ``config.logit_thresholds``, else 0.5), capped at ``top_k``.
"""

from __future__ import annotations

from typing import Any

from transformers import AutoModelForSequenceClassification, Pipeline
from transformers.pipelines import PIPELINE_REGISTRY

from .checkpoints import check_multi_label_config
from .prediction import check_top_k, decide_label_sets, decision_thresholds, truncation_length

TASK = "multi-label-classification"


class MultiLabelClassificationPipeline(Pipeline):
    """Predict the label set of each text with a multi-label sigmoid classifier.

    Call arguments (also accepted by ``pipeline(...)`` as defaults):

    * ``threshold`` (float in ``[0, 1]``, optional): probability threshold for every label; default:
      ``config.logit_thresholds`` when the checkpoint has them, else 0.5;
    * ``top_k`` (int, optional): at most this many labels per text, the highest-scoring of those above the
      threshold (``threshold=0, top_k=k`` gives exactly the ``k`` best labels);
    * ``max_length`` (int, optional): truncate texts to this many tokens (default: the tokenizer's limit).

    Constructor argument ``assume_multi_label=True`` accepts a stock model whose config has no ``problem_type``
    (transformers would treat it as softmax); single-label and regression models are refused.

    Returns per text ``{"labels": [names, highest score first], "scores": [sigmoid probabilities],
    "within_guarantee": bool | None}``: a dict for one string, a list of dicts for a list of strings.
    """

    _load_processor = False
    _load_image_processor = False
    _load_feature_extractor = False
    _load_tokenizer = True

    def __init__(self, *args, assume_multi_label: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        check_multi_label_config(self.model.config, assume_multi_label=assume_multi_label)

    def _sanitize_parameters(
        self, threshold: float | None = None, top_k: int | None = None, max_length: int | None = None, **unknown
    ):
        unknown.pop("local_files_only", None)  # pipeline() passes it on to the pipeline as well as to the loaders
        if unknown:
            raise ValueError(
                f"Unknown argument(s) {sorted(unknown)} for the {TASK} pipeline; it takes threshold, top_k and "
                "max_length."
            )
        preprocess, postprocess = {}, {}
        if max_length is not None:
            preprocess["max_length"] = truncation_length(self.tokenizer, max_length)
        if threshold is not None:
            decision_thresholds(self.model.config, threshold)  # a bad value fails now, not after the forward pass
            postprocess["threshold"] = threshold
        if top_k is not None:
            check_top_k(top_k)
            postprocess["top_k"] = top_k
        return preprocess, {}, postprocess

    def __call__(self, inputs: str | list[str], **kwargs: Any) -> dict | list[dict]:
        """Classify one text (returns a dict) or a list of texts (returns a list of dicts, in order)."""
        if isinstance(inputs, list):
            for index, text in enumerate(inputs):
                if not isinstance(text, str):
                    raise ValueError(f"inputs[{index}] is a {type(text).__name__}, not a string.")
            if not inputs:
                return []
        elif not isinstance(inputs, str):
            raise ValueError(f"The {TASK} pipeline takes a string or a list of strings, got {type(inputs).__name__}.")
        return super().__call__(inputs, **kwargs)

    def preprocess(self, text: str, max_length: int | None = None) -> dict[str, Any]:
        length = truncation_length(self.tokenizer, max_length)
        return self.tokenizer(text, truncation=True, max_length=length, return_tensors="pt")

    def _forward(self, model_inputs: dict[str, Any]) -> dict[str, Any]:
        return {"logits": self.model(**model_inputs).logits}

    def postprocess(self, model_outputs: dict[str, Any], threshold: float | None = None, top_k: int | None = None):
        logits = model_outputs["logits"].float().cpu().numpy()  # (1, n)
        return decide_label_sets(logits, self.model.config, threshold=threshold, top_k=top_k)[0].to_dict()


def register_pipeline() -> None:
    """Register :class:`MultiLabelClassificationPipeline` as the ``multi-label-classification`` task (idempotent)."""
    current = PIPELINE_REGISTRY.supported_tasks.get(TASK, {}).get("impl")
    if current is not MultiLabelClassificationPipeline:
        PIPELINE_REGISTRY.register_pipeline(
            TASK,
            pipeline_class=MultiLabelClassificationPipeline,
            pt_model=AutoModelForSequenceClassification,
            type="text",
        )


__all__ = ["TASK", "MultiLabelClassificationPipeline", "register_pipeline"]
