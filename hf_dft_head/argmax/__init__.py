"""Argmaxability engine: which label sets can a sigmoid multi-label head output at all?

Pure numpy/scipy/highspy (no transformers). Entry point: :func:`verify_label_sets`.
"""

from .label_sets import LabelSets, as_label_sets, from_csr, from_id_lists, from_multi_hot, signs_from_labels
from .lp import (
    CERTIFICATE_TOLERANCE,
    DEFAULT_BOX,
    DEFAULT_EPSILON,
    SOLVER_TOLERANCE,
    FarkasCheck,
    WitnessCheck,
    check_farkas_certificate,
    check_witness,
)
from .rule import (
    count_dft_argmaxable,
    count_label_sets_up_to,
    count_sign_changes,
    count_sign_patterns,
    dft_rule_certificate,
    rule_argmaxable,
)
from .summary import summarise_audit_verdicts, summarize_verdicts
from .verify import (
    ARGMAXABLE,
    RULE_REJECTED_ROWS,
    UNARGMAXABLE,
    UNDECIDED,
    Head,
    Verdict,
    VerificationResult,
    prepare_head,
    verify_label_sets,
    verify_signs,
)

__all__ = [
    "ARGMAXABLE",
    "CERTIFICATE_TOLERANCE",
    "DEFAULT_BOX",
    "DEFAULT_EPSILON",
    "RULE_REJECTED_ROWS",
    "SOLVER_TOLERANCE",
    "UNARGMAXABLE",
    "UNDECIDED",
    "FarkasCheck",
    "Head",
    "LabelSets",
    "VerificationResult",
    "Verdict",
    "WitnessCheck",
    "as_label_sets",
    "check_farkas_certificate",
    "check_witness",
    "count_dft_argmaxable",
    "count_label_sets_up_to",
    "count_sign_changes",
    "count_sign_patterns",
    "dft_rule_certificate",
    "from_csr",
    "from_id_lists",
    "from_multi_hot",
    "prepare_head",
    "rule_argmaxable",
    "signs_from_labels",
    "summarise_audit_verdicts",
    "summarize_verdicts",
    "verify_label_sets",
    "verify_signs",
]
