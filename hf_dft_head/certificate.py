"""Argmaxability certificates: build, write and verify the JSON file that makes "certified" checkable.

``certify(CKPT, spec)`` writes ``dft_certificate.json`` (and the figure ``argmaxability.png``) into a checkpoint
folder. The certificate

* binds every file of the checkpoint that ``hf-dft push`` publishes (sha256 of each: weights, config, code,
  tokenizer, figure, training records; see :mod:`hf_dft_head.checkpoints` for what is bound);
* binds the code: the shipped ``*.py`` files are byte-identical to the certifying package's own, ``auto_map`` names
  only the package's classes, and the model loaded through the checkpoint's own code in a process without the
  package computes ``[G|S](P h + c)`` (:mod:`hf_dft_head.remote_code`);
* states the guarantee of a DFT head precisely, what holds in exact arithmetic and what was checked in the model's
  dtype, with the conditions it rests on, each with the number measured and the tolerance: the layer reproduces
  the Gale matrix ``G`` recomputed from (n, k), the head equals ``[G|S](P h + c)``, ``P`` has full row rank;
* records the audit (:mod:`hf_dft_head.audit`) of a named data split: gold and predicted label sets, argmaxable and
  epsilon-argmaxable counts, radius quantiles by size, the quality metrics of the predictions, and a probe of the
  tokenizer and the whole model on fixed texts;
* records the verifier options, the package version, the date and the software versions.

The head, guarantee, thresholds, code and probe sections are computed (and the probe compared) by
:mod:`hf_dft_head.certificate_checks`; :mod:`hf_dft_head.certificate_report` prints a certificate in a few lines.

``verify_checkpoint`` trusts nothing the certificate says: it recomputes every section from the files with the
installed package and names each difference. A certificate made by another version of the package fails closed.

Threat model. An uploader controls every byte of a checkpoint, the certificate included, so hashes alone prove
nothing: ``verify`` recomputes. An uploader *can* write a truthful certificate for any checkpoint that really has
the property (that is the point); they cannot make ``verify`` accept code, weights, tokenizer, labels or figures
that differ from what the certificate states. ``verify`` cannot say whether the encoder can produce, for some
text, the features that yield a given set: the guarantee is about the head's input space and, when ``P`` has full
row rank, the encoder's feature space.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import os
import platform
import tempfile
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import Any

from . import audit, sharding
from .audit_report import AUDIT_FIGURE_NAME, plot_series, write_plot
from .certificate_checks import code_section, compare_text_probe, head_section, text_probe, thresholds_section
from .checkpoints import (
    CERTIFICATE_NAME,
    UNBOUND_REPO_FILES,
    FileInventory,
    bound_files,
    hash_files,
    load_checkpoint,
    sha256_file,
)
from .data import DataSpec
from .output_checks import write_json
from .remote_code import RemoteProbe, probe_remote_code, remote_code_problems
from .sigmoid_head import SigmoidHead, find_sigmoid_head
from .version import __version__

FIGURE_NAME = AUDIT_FIGURE_NAME
CERTIFICATE_FORMAT = "hf-dft-head/argmaxability-certificate"
CERTIFICATE_VERSION = 2
# Numbers recomputed by verify must match the certificate to this relative tolerance (LP radii may differ in the
# last digits across machines/BLAS builds); counts, strings and hashes must match exactly.
VERIFY_RTOL = 1e-5
VERIFY_ATOL = 1e-12
# Sections of a certificate, all required; verify recomputes all but the run's description.
SECTIONS = (
    "certificate_format",
    "format_version",
    "package",
    "status",
    "reasons_not_certified",
    "files",
    "head",
    "checks",
    "guarantee",
    "thresholds",
    "probe",
    "audit",
    "verifier",
    "options",
    "figure",
    "created_utc",
    "software",
)
DESCRIPTIVE_SECTIONS = ("created_utc", "software")
AUDIT_SECTIONS = ("audit", "verifier", "figure")
SOFTWARE = ("hf-dft-head", "numpy", "scipy", "highspy", "torch", "transformers", "tokenizers", "huggingface-hub")


class CertificateError(ValueError):
    """A certificate is missing, unreadable, of another format or version, or the checkpoint cannot be certified."""


def software_versions() -> dict[str, str]:
    """Versions of Python and the packages the certificate's numbers depend on."""
    versions = {"python": platform.python_version()}
    for name in SOFTWARE:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


# ----------------------------------------------------------------------------------------------------------------
# Building and writing
# ----------------------------------------------------------------------------------------------------------------


def _refuse_symlinks(inventory: FileInventory, checkpoint: Path) -> None:
    if inventory.symlinks:
        raise CertificateError(
            f"{checkpoint} holds symbolic links ({', '.join(inventory.symlinks)}): a certificate binds regular files "
            "only (a link can point elsewhere after certification). Replace each link with a copy of its target."
        )


@dataclass
class _Recomputed:
    """A certificate's sections recomputed from the files, and the problems met on the way (reasons / mismatches)."""

    sections: dict[str, Any]
    problems: list[str] = field(default_factory=list)
    figure_report: dict[str, Any] | None = None
    model: Any = None
    tokenizer: Any = None


def _recompute(
    checkpoint: Path,
    spec: DataSpec | None,
    options: audit.VerifierOptions,
    code: dict[str, Any] | None,
    *,
    progress: bool,
    remote_probe: bool,
) -> _Recomputed:
    """Every checkable section from the files with this package: head, checks, guarantee, probe and, with a
    ``spec``, the audit. ``code`` is the :func:`~hf_dft_head.certificate_checks.code_section`; ``remote_probe``
    also runs the checkpoint's own code in a separate interpreter (only meaningful when ``code`` passed)."""
    model, tokenizer = load_checkpoint(checkpoint, dft_config=code is not None)  # code: model_type is ours
    head = find_sigmoid_head(model)
    head_info, checks, guarantee, reasons = head_section(model, head)
    thresholds, thresholds_reason = thresholds_section(head)
    reasons += [thresholds_reason] if thresholds_reason else []
    out = _Recomputed(
        {"head": head_info, "guarantee": guarantee, "thresholds": thresholds}, model=model, tokenizer=tokenizer
    )
    if code is not None:
        checks["code"] = code
    out.sections["checks"] = checks  # checks["remote_code"] is added below, once the probe has answered
    # The probe interpreter loads the checkpoint through its own code while this process audits (at 1M labels
    # each takes tens of seconds).
    with contextlib.ExitStack() as stack:
        if code is not None and remote_probe:
            probe = stack.enter_context(RemoteProbe(checkpoint, model, tokenizer, max_length=options.max_length))
        out.sections["probe"] = text_probe(model, tokenizer, options.max_length)
        if spec is not None:
            loaded = (model, tokenizer)
            _audit_sections(out, checkpoint, spec, options, head, reasons, thresholds_reason, loaded, progress)
        if code is not None and remote_probe:
            checks["remote_code"] = probe.result()
            out.problems += remote_code_problems(checks["remote_code"])
    out.sections["options"] = options.recorded()
    out.sections["reasons"] = reasons
    return out


def _audit_sections(
    out: _Recomputed,
    checkpoint: Path,
    spec: DataSpec,
    options: audit.VerifierOptions,
    head: SigmoidHead,
    reasons: list[str],
    thresholds_reason: str | None,
    loaded: tuple[Any, Any],
    progress: bool,
) -> None:
    """The audit, verifier and figure sections of :func:`_recompute` into ``out``; ``reasons`` gains the audit's."""
    report = audit.audit_checkpoint(checkpoint, spec, options, progress=progress, loaded=loaded)
    gold = report["gold"]
    if head.kind == "dft" and head.slack_dims == 0:
        # Impossible under the theorem: recorded, never hidden.
        rule_sets = [e for e in gold["unargmaxable_examples"] if len(e["label_ids"]) <= head.dft_k]
        if rule_sets:
            reasons.append(f"the verifier called {len(rule_sets)} sets of <= k labels unargmaxable")
    if head.kind != "dft":
        reasons[-1] += (
            f"; the audit counts the gold sets it cannot output ({gold['unargmaxable']} of "
            f"{gold['distinct_sets']} distinct sets)"
        )
    lost = report.get("thresholds")
    if thresholds_reason and lost:
        reasons.append(
            f"with the thresholds {lost['lost_gold_sets']} distinct gold sets of the audit that the raw head can "
            f"output are never output ({lost['examples_with_lost_set']} examples)"
            + "".join(f"; e.g. {{{', '.join(e['labels'])}}}" for e in lost["lost_examples"][:3])
        )
    out.sections["audit"] = {
        key: report[key]
        for key in ("dataset", "prediction", "quality", "gold", "predicted", "thresholds")
        if key in report
    }
    out.sections["verifier"] = report["verifier"]
    out.sections["figure"] = {"path": FIGURE_NAME, "series": plot_series(report)}
    out.figure_report = report


def certify(
    checkpoint: str | os.PathLike,
    spec: DataSpec,
    options: audit.VerifierOptions | None = None,
    *,
    progress: bool = True,
) -> dict[str, Any]:
    """Audit ``checkpoint`` on the split ``spec`` (a :class:`~hf_dft_head.data.DataSpec`), check its head and
    code, write the figure and the certificate into it, and return the certificate.

    Dense and bottleneck heads get a ``"not_certified"`` certificate with their audit. Raises
    :class:`CertificateError` for a folder that cannot be certified (symbolic links, no config or weights). Under
    ``accelerate launch`` (:mod:`hf_dft_head.sharding`) only the main process writes; another process returns its
    ``status``, ``reasons_not_certified`` and recomputed sections, without ``files``.
    """
    checkpoint = Path(checkpoint)
    options = options or audit.VerifierOptions()
    inventory = bound_files(checkpoint)
    _refuse_symlinks(inventory, checkpoint)
    code, problems = code_section(checkpoint, inventory.files)
    recomputed = _recompute(checkpoint, spec, options, code, progress=progress, remote_probe=not problems)
    reasons = recomputed.sections.pop("reasons") + problems + recomputed.problems
    if not sharding.current().is_main:  # the main process, which computed the same, writes the files
        return {
            "status": "not_certified" if reasons else "certified",
            "reasons_not_certified": reasons,
            **recomputed.sections,
        }
    write_plot(recomputed.figure_report, checkpoint / FIGURE_NAME)
    files = bound_files(checkpoint).files  # now with the figure
    certificate = {
        "certificate_format": CERTIFICATE_FORMAT,
        "format_version": CERTIFICATE_VERSION,
        "package": {"name": "hf-dft-head", "version": __version__},
        "status": "not_certified" if reasons else "certified",
        "reasons_not_certified": reasons,
        **recomputed.sections,
        "files": hash_files(checkpoint, files),
        "created_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "software": software_versions(),
    }
    write_certificate(checkpoint, certificate)
    return certificate


def write_certificate(checkpoint: str | os.PathLike, certificate: dict[str, Any]) -> Path:
    """Write ``certificate`` as ``CERTIFICATE_NAME`` in ``checkpoint`` atomically (temp file + ``os.replace``)."""
    return write_json(certificate, Path(checkpoint) / CERTIFICATE_NAME)


def read_certificate(checkpoint: str | os.PathLike) -> dict[str, Any]:
    """The certificate of ``checkpoint``.

    Raises :class:`CertificateError` when it is missing, unreadable, not of this format, of another format version
    or made by another version of the package (which fails closed: its code may differ), or lacks a section.
    """
    path = Path(checkpoint) / CERTIFICATE_NAME
    if not path.is_file():
        raise CertificateError(
            f"{checkpoint} has no {CERTIFICATE_NAME}: run `hf-dft certify {checkpoint} --dataset ...`."
        )
    try:
        certificate = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CertificateError(f"{path} is not valid JSON ({error}): it was edited or truncated.") from None
    if not isinstance(certificate, dict) or certificate.get("certificate_format") != CERTIFICATE_FORMAT:
        raise CertificateError(f"{path} is not an hf-dft-head certificate (certificate_format missing or different).")
    if certificate.get("format_version") != CERTIFICATE_VERSION:
        raise CertificateError(
            f"{path} has format version {certificate.get('format_version')!r}; this hf-dft-head ({__version__}) reads "
            f"version {CERTIFICATE_VERSION}. Re-certify the checkpoint with `hf-dft certify`, or verify it with the "
            "hf-dft-head version that made it."
        )
    package = certificate.get("package")
    made_by = package.get("version") if isinstance(package, dict) else None
    if made_by != __version__:
        raise CertificateError(
            f"{path} was made by hf-dft-head {made_by!r}, and this is hf-dft-head {__version__}: a checkpoint "
            f"carries the code of the version that saved it, so it is verified only by that version. Install it "
            f"(pip install hf-dft-head=={made_by}) and run `hf-dft verify` again, or re-save and re-certify the "
            "checkpoint with this version."
        )
    missing = [name for name in SECTIONS if name not in certificate]
    if missing:
        raise CertificateError(f"{path} lacks the section(s) {', '.join(missing)}: it was edited. Re-certify.")
    extra = sorted(set(certificate) - set(SECTIONS))
    if extra:
        raise CertificateError(f"{path} has unknown section(s) {', '.join(extra)}: it was edited. Re-certify.")
    if not isinstance(certificate["files"], dict) or not all(
        isinstance(name, str) and isinstance(digest, str) for name, digest in certificate["files"].items()
    ):
        raise CertificateError(f"{path}: 'files' must map file names to sha256 digests; it was edited. Re-certify.")
    return certificate


# ----------------------------------------------------------------------------------------------------------------
# Verifying
# ----------------------------------------------------------------------------------------------------------------

VERIFIED, PARTIAL, FAILED = "verified", "partial", "failed"


@dataclass
class Verification:
    """What ``verify`` found: ``mismatches`` (empty when everything matches), what was ``checked`` and ``skipped``.

    ``outcome`` is ``"verified"`` (nothing differs, nothing skipped), ``"partial"`` (nothing differs but something
    was not checked, e.g. the audit with ``recheck_audit=False``) or ``"failed"``. ``status`` is what the
    certificate says of the model (``"certified"`` / ``"not_certified"``): an accurate ``not_certified``
    certificate verifies, and is still not a certification.
    """

    checkpoint: str
    mismatches: list[str] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    status: str | None = None

    @property
    def ok(self) -> bool:
        """True when nothing differs (also when some checks were skipped: see ``outcome``)."""
        return not self.mismatches

    @property
    def outcome(self) -> str:
        """``"verified"``, ``"partial"`` or ``"failed"``."""
        if self.mismatches:
            return FAILED
        return PARTIAL if self.skipped else VERIFIED

    def summary(self) -> str:
        """Human-readable lines: verdict, mismatches, checks, what was not checked."""
        verdict = {
            VERIFIED: "VERIFIED",
            PARTIAL: "NOT FULLY VERIFIED (no mismatch found, but some checks were skipped: see below)",
            FAILED: f"FAILED ({len(self.mismatches)} mismatches)",
        }[self.outcome]
        lines = [f"Verification of {self.checkpoint}: {verdict}; certificate status: {self.status}"]
        lines += [f"  MISMATCH     {m}" for m in self.mismatches]
        lines += [f"  checked      {c}" for c in self.checked]
        lines += [f"  NOT CHECKED  {s}" for s in self.skipped]
        return "\n".join(lines)


def _numbers_match(recorded: Any, recomputed: Any) -> bool:
    if isinstance(recorded, bool) or isinstance(recomputed, bool):
        return recorded == recomputed
    if isinstance(recorded, (int, float)) and isinstance(recomputed, (int, float)):
        if isinstance(recorded, int) and isinstance(recomputed, int):
            return recorded == recomputed
        return math.isclose(float(recorded), float(recomputed), rel_tol=VERIFY_RTOL, abs_tol=VERIFY_ATOL)
    return recorded == recomputed


def diff_certificates(recorded: Any, recomputed: Any, path: str = "") -> list[str]:
    """Every place where two certificate trees differ, as ``"path: certificate says A, recomputed B"``.

    Integers, strings and booleans must be equal; floats agree to ``VERIFY_RTOL`` / ``VERIFY_ATOL``.
    """
    if isinstance(recorded, dict) and isinstance(recomputed, dict):
        out = []
        for key in sorted(set(recorded) | set(recomputed)):
            where = f"{path}.{key}" if path else str(key)
            if key not in recomputed:
                out.append(f"{where}: in the certificate but not recomputed (added by hand?)")
            elif key not in recorded:
                out.append(f"{where}: missing from the certificate (recomputed {_short(recomputed[key])})")
            else:
                out.extend(diff_certificates(recorded[key], recomputed[key], where))
        return out
    if isinstance(recorded, list) and isinstance(recomputed, list):
        if len(recorded) != len(recomputed):
            return [f"{path}: certificate has {len(recorded)} entries, recomputed {len(recomputed)}"]
        out = []
        for index, (a, b) in enumerate(zip(recorded, recomputed)):
            out.extend(diff_certificates(a, b, f"{path}[{index}]"))
        return out
    if _numbers_match(recorded, recomputed):
        return []
    return [f"{path}: certificate says {_short(recorded)}, recomputed {_short(recomputed)}"]


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


def compare_files(
    recorded: dict[str, str], checkpoint: Path, inventory: FileInventory, remote_files: list[str] | None
) -> list[str]:
    """Named differences between the certificate's file list and the folder (and the Hub repo's file list)."""
    problems = [
        f"file {name}: a symbolic link; a certificate binds regular files only (replace it with a copy)"
        for name in inventory.symlinks
    ]
    present = set(inventory.files)
    for name in sorted(recorded):
        if name not in present:
            problems.append(f"file {name}: listed in the certificate but missing from the checkpoint")
        elif sha256_file(checkpoint / name) != recorded[name]:
            problems.append(f"file {name}: sha256 differs from the certificate (the file changed after certification)")
    for name in sorted(present - set(recorded)):
        problems.append(
            f"file {name}: not bound by the certificate (added or renamed after certification); push would publish it"
        )
    for name in sorted(set(remote_files or ()) - set(recorded) - set(UNBOUND_REPO_FILES) - present):
        problems.append(f"file {name}: in the Hub repo but not bound by the certificate")
    return problems


def verify_checkpoint(
    checkpoint: str | os.PathLike,
    *,
    recheck_audit: bool = True,
    dataset: str | None = None,
    workers: int | None = None,
    progress: bool = True,
    remote_files: list[str] | None = None,
    stop_early: bool = False,
) -> Verification:
    """Recompute the certificate of ``checkpoint`` with this package and compare; nothing recorded is trusted.

    Order (cheap to dear): the certificate's format and version; the bound files (set, bytes, no links); the code
    files and ``auto_map``; loading; the head checks, guarantee and probe texts; with ``recheck_audit`` the audit,
    its figures and the figure file (re-drawn and compared byte for byte); finally, when nothing has failed, the
    model through the checkpoint's own code in a separate interpreter. ``dataset`` replaces the recorded data
    location (e.g. the data lives elsewhere on this machine); the data's fingerprint is still compared.
    ``remote_files``: the Hub repo's file list, when ``checkpoint`` is a download of one. ``stop_early``: stop at
    the first failed stage (``push`` needs only a yes or no, and names what it found). ``workers``: LP processes
    (default :func:`hf_dft_head.audit.resolve_workers`); the verdicts do not depend on it. The audit runs with the
    certificate's recorded options, so the radius sample it states (size, seed, the sampled sets' sha256) is drawn
    and computed again, and its figures compared.

    A missing, unreadable, edited or foreign certificate is a failed verification (its reason is the mismatch).
    """
    checkpoint = Path(checkpoint)
    result = Verification(str(checkpoint))
    try:
        recorded = read_certificate(checkpoint)
    except CertificateError as error:
        result.mismatches.append(f"certificate: {error}")
        return result
    result.status = recorded["status"]
    inventory = bound_files(checkpoint)
    result.mismatches += compare_files(recorded["files"], checkpoint, inventory, remote_files)
    result.checked.append(f"sha256 of the {len(recorded['files'])} bound files, and that no other file is present")
    code, code_problems = code_section(checkpoint, inventory.files)
    result.mismatches += code_problems
    result.checked.append("code files identical to this package's, auto_map of the config and the tokenizer")
    if result.mismatches and stop_early:
        result.skipped.append("everything after the file and code checks: they failed")
        return result

    options = _recorded_options(recorded, workers)
    if not recheck_audit:
        result.skipped.append("the audit (gold and predicted label sets, quality, figure): --skip-audit")
    try:
        spec = _recorded_data_spec(recorded, dataset) if recheck_audit else None
        recomputed = _recompute(checkpoint, spec, options, code, progress=progress, remote_probe=False)
    except (OSError, ValueError) as error:
        result.mismatches.append(f"recomputation failed: {error}")
        return result
    compared = ["head", "guarantee", "thresholds", "options"] + (list(AUDIT_SECTIONS) if recheck_audit else [])
    recorded_checks = {k: v for k, v in (recorded.get("checks") or {}).items() if k != "remote_code"}
    result.mismatches += diff_certificates(
        {**{key: recorded.get(key) for key in compared}, "checks": recorded_checks},
        {**{key: recomputed.sections.get(key) for key in compared}, "checks": recomputed.sections["checks"]},
    )
    result.mismatches += compare_text_probe(recorded.get("probe"), recomputed.sections["probe"])
    result.checked.append("head checks (G, head composition, rank of P), guarantee, probe texts")
    if recheck_audit:
        result.mismatches += _compare_figure(checkpoint, recomputed.figure_report)
        result.checked.append(f"audit on {spec.describe()}, its quality figures, and the figure file")
    if code is not None:
        if result.mismatches:
            result.skipped.append("the model through the checkpoint's own code: not run, the checks above failed")
        else:
            _verify_remote_code(checkpoint, recorded, recomputed, options, result)
    if not result.mismatches and recheck_audit:
        reasons = recomputed.sections["reasons"]
        result.mismatches += diff_certificates(
            {key: recorded.get(key) for key in ("status", "reasons_not_certified")},
            {"status": "not_certified" if reasons else "certified", "reasons_not_certified": reasons},
        )
    return result


def _recorded_data_spec(recorded: dict[str, Any], dataset: str | None) -> DataSpec:
    """The split the certificate's audit was computed on; ``dataset`` replaces its data set (the data moved)."""
    spec = DataSpec.from_record((recorded.get("audit") or {}).get("dataset") or {})
    return spec if dataset is None else replace(spec, dataset=dataset)


def _recorded_options(recorded: dict[str, Any], workers: int | None) -> audit.VerifierOptions:
    fields = audit.VerifierOptions.__dataclass_fields__
    options = recorded.get("options") if isinstance(recorded.get("options"), dict) else {}
    return audit.VerifierOptions(**{key: value for key, value in options.items() if key in fields}, workers=workers)


def _compare_figure(checkpoint: Path, report: dict[str, Any]) -> list[str]:
    """The figure file must be byte-identical to the figure re-drawn from the recomputed audit."""
    path = checkpoint / FIGURE_NAME
    if not path.is_file():
        return [f"figure {FIGURE_NAME}: missing from the checkpoint"]
    with tempfile.TemporaryDirectory(prefix="hf_dft_figure_") as scratch:
        redrawn = write_plot(report, Path(scratch) / FIGURE_NAME)
        if sha256_file(redrawn) != sha256_file(path):
            return [
                f"figure {FIGURE_NAME}: differs from the figure re-drawn from the recomputed audit (it was replaced, "
                "or matplotlib's version differs from the certifying one)"
            ]
    return []


def _verify_remote_code(
    checkpoint: Path,
    recorded: dict[str, Any],
    recomputed: _Recomputed,
    options: audit.VerifierOptions,
    result: Verification,
) -> None:
    """Run the checkpoint's own code in a separate interpreter; compare with the package and the certificate."""
    section = probe_remote_code(checkpoint, recomputed.model, recomputed.tokenizer, max_length=options.max_length)
    result.mismatches += remote_code_problems(section)
    if not remote_code_problems(section):
        # The measured errors are rounding noise that differs between machines; what is compared is the claim:
        # which code loaded, in which dtype, against which tolerances, and that it passed.
        claims = {key: value for key, value in section.items() if not key.endswith("_max_relative_error")}
        recorded_section = (recorded.get("checks") or {}).get("remote_code")
        recorded_claims = (
            {key: value for key, value in recorded_section.items() if not key.endswith("_max_relative_error")}
            if isinstance(recorded_section, dict)
            else recorded_section
        )
        result.mismatches += diff_certificates(recorded_claims, claims, "checks.remote_code")
    result.checked.append(
        "the model loaded through the checkpoint's own code (trust_remote_code, no hf_dft_head importable) "
        "against this package's float64 computation"
    )
