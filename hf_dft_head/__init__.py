"""hf_dft_head: provably argmaxable sparse multi-label classification heads for transformers.

Importing the package registers the model with the Auto classes:

    import hf_dft_head
    from transformers import AutoModel
    model = AutoModel.from_pretrained("a-dft-checkpoint")
"""

from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification

from .configuration import DFTConfig
from .convert import convert_sequence_classifier
from .gale import gale_matrix
from .layers import BottleneckHead, DenseHead, DFTHead, DFTLayer, dft_synthesis, prior_logit
from .metrics import ARGMAXABILITY_METRIC, QUALITY_METRIC
from .modeling import DFTForMultiLabelClassification, DFTPreTrainedModel
from .version import __version__

AutoConfig.register(DFTConfig.model_type, DFTConfig)
AutoModel.register(DFTConfig, DFTForMultiLabelClassification)
AutoModelForSequenceClassification.register(DFTConfig, DFTForMultiLabelClassification)

__all__ = [
    "ARGMAXABILITY_METRIC",
    "QUALITY_METRIC",
    "BottleneckHead",
    "DFTConfig",
    "DFTForMultiLabelClassification",
    "DFTHead",
    "DFTLayer",
    "DFTPreTrainedModel",
    "__version__",
    "DenseHead",
    "convert_sequence_classifier",
    "dft_synthesis",
    "gale_matrix",
    "prior_logit",
]
