"""The certificate in a few lines of text, as ``hf-dft certify`` prints it (the JSON file has the rest)."""

from __future__ import annotations

from typing import Any

from .certificate_checks import GALE_TOLERANCE
from .data import DataSpec
from .version import __version__


def format_certificate(certificate: dict[str, Any]) -> str:
    """A few lines: the status and guarantee in short, the checks, what the audit found (the JSON has the rest)."""
    audit_section = certificate["audit"]
    gold = audit_section["gold"]
    lines = []
    guarantee = certificate["guarantee"]
    if certificate["status"] == "certified" and guarantee:
        order = guarantee["label_order"] if guarantee["label_order"].startswith("sha256:") else "label-id order"
        lines.append(
            f"Certified: every label set with at most {guarantee['max_sign_changes']} sign changes along the label "
            f"circle ({order}), so every set of at most k = {guarantee['k']} labels, can be output (exact "
            "arithmetic; the full statement is in the certificate)."
        )
    else:
        lines.append("Not certified: " + "; ".join(certificate["reasons_not_certified"]))
    if guarantee:
        checks = certificate["checks"]
        projection = checks["projection"]
        lines.append(
            f"Checks: G max error {checks['gale_matrix']['max_abs_error']:.1e} (tol {GALE_TOLERANCE:g}); "
            f"sigma_min(P) {projection['smallest_singular_value']:.3g} (tol {projection['tolerance']:.2g}); "
            f"code identical to hf-dft-head {__version__}, checked through remote-code loading."
        )
    epsilon = f" ({gold['epsilon_argmaxable']} epsilon-argmaxable)" if gold.get("epsilon_argmaxable_share") else ""
    thresholds = certificate["thresholds"]
    if thresholds["kind"] != "none":
        decided = "by the rule" if thresholds["rule_decides"] else "by LP"
        kept = {True: "yes", False: "no", None: "n/a"}[thresholds["guarantee_covers_predictions"]]
        lines.append(
            f"Thresholds: {thresholds['kind'].replace('_', '-')} logit_thresholds of config.json; the audit decided "
            f"every set {decided}; guarantee kept for the model as it predicts: {kept}."
        )
    data = DataSpec.from_record(audit_section["dataset"]).describe()
    lines.append(
        f"Audit ({data}): {gold['argmaxable']} of {gold['distinct_sets']} distinct "
        f"gold label sets argmaxable{epsilon}, {gold['unargmaxable']} never outputtable, {gold['undecided']} undecided."
    )
    radius = (certificate.get("verifier") or {}).get("radius") or {}
    if radius.get("computed_for") in ("sample", "none") and radius.get("rule_decided_argmaxable_sets"):
        lines.append(
            f"Radii of the {radius['rule_decided_argmaxable_sets']} argmaxable sets the rule decided: "
            + (f"a sample of {radius['sample_size']} (seed {radius['seed']})" if radius["sample_size"] else "none")
            + " (--radius-sample)."
        )
    quality = audit_section.get("quality") or {}
    if quality:
        shown = ("p@1", "f1@5", "micro_f1", "macro_f1")
        lines.append("Quality: " + "  ".join(f"{name} {quality[name]:.4f}" for name in shown if name in quality))
    return "\n".join(lines)
