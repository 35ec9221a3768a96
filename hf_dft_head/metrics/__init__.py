"""`evaluate` modules shipped with the package; load them offline with ``evaluate.load(PATH)``."""

from pathlib import Path

_HERE = Path(__file__).resolve().parent

ARGMAXABILITY_METRIC = str(_HERE / "argmaxability")
QUALITY_METRIC = str(_HERE / "multilabel_quality")
