"""hf_dft_head: provably argmaxable sparse multi-label classification heads for transformers.

Importing the package registers the model with the Auto classes and the ``multi-label-classification`` pipeline:

    import hf_dft_head
    from transformers import AutoModel, pipeline
    model = AutoModel.from_pretrained("a-dft-checkpoint")
    classify = pipeline("multi-label-classification", model="a-dft-checkpoint")
"""

from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification

from .configuration import DFTConfig
from .convert import convert_sequence_classifier
from .gale import gale_matrix
from .layers import BottleneckHead, DenseHead, DFTHead, DFTLayer, dft_synthesis, prior_logit
from .metrics import ARGMAXABILITY_METRIC, QUALITY_METRIC
from .modeling import DFTForMultiLabelClassification, DFTPreTrainedModel
from .pipeline import MultiLabelClassificationPipeline, register_pipeline
from .prediction import LabelSetPrediction, predict_label_sets
from .version import __version__

AutoConfig.register(DFTConfig.model_type, DFTConfig)
AutoModel.register(DFTConfig, DFTForMultiLabelClassification)
AutoModelForSequenceClassification.register(DFTConfig, DFTForMultiLabelClassification)
register_pipeline()

__all__ = [
    "ARGMAXABILITY_METRIC",
    "QUALITY_METRIC",
    "BottleneckHead",
    "DFTConfig",
    "DFTForMultiLabelClassification",
    "DFTHead",
    "DFTLayer",
    "DFTPreTrainedModel",
    "LabelSetPrediction",
    "MultiLabelClassificationPipeline",
    "__version__",
    "DenseHead",
    "convert_sequence_classifier",
    "dft_synthesis",
    "gale_matrix",
    "predict_label_sets",
    "prior_logit",
]
