"""Argmaxability certificates: build, write and verify the JSON file that makes "certified" checkable.

``hf-dft certify CKPT --dataset ... --split test`` writes ``dft_certificate.json`` (and the figure
``argmaxability.png``) into a checkpoint folder. The certificate

* binds to the exact checkpoint: sha256 of every weights file, of ``config.json`` and of the remote-code files;
* states the guarantee of a DFT head precisely (DESIGN.md section 3) and the conditions it rests on, each with the
  number measured and the tolerance: the head's layer, probed on the unit vectors in float64, reproduces the
  Gale matrix ``G`` (recomputed from n and k) and the slack columns; the whole head equals ``[G|S] (P h + c)``;
  and the projection ``P`` has full row rank (smallest singular value above a stated tolerance), which carries
  the guarantee from the head's input space to the encoder's feature space;
* records the empirical audit (:mod:`hf_dft_head.audit`) on a named data split: gold and predicted label sets,
  argmaxable and epsilon-argmaxable counts, radius quantiles by size, sets with more than k labels, undecided;
* records the verifier settings, the date and the package versions.

Dense and bottleneck heads get the same file with ``"status": "not_certified"``: their audit says how many gold
sets they cannot output, and there is no structural guarantee.

``hf-dft verify CKPT`` (a folder or a Hub repo id) recomputes everything, hashes, G, singular values, the audit
figures and the figure file's hash, and names every mismatch; it exits non-zero on any.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import hashlib
import json
import math
import os
import platform
import sys
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from . import audit
from .gale import gale_matrix

CERTIFICATE_NAME = "dft_certificate.json"
FIGURE_NAME = audit.AUDIT_FIGURE_NAME
CERTIFICATE_FORMAT = "hf-dft-head/argmaxability-certificate"
CERTIFICATE_VERSION = 1
# Files the certificate binds to: what decides the model's outputs.
WEIGHT_SUFFIXES = (".safetensors", ".bin")
WEIGHT_INDEX_SUFFIX = ".index.json"
# Float64 tolerances of the head checks; float64 FFT / matmul errors are ~1e-15 at these sizes.
GALE_TOLERANCE = 1e-10
COMPOSITION_TOLERANCE = 1e-9
# Numbers recomputed by verify must match the certificate to this relative tolerance (LP radii may differ in the
# last digits across machines/BLAS builds); counts and hashes must match exactly.
VERIFY_RTOL = 1e-5
VERIFY_ATOL = 1e-12
# Fields that describe the run, not the checkpoint: never compared by verify.
UNCHECKED_FIELDS = ("created_utc", "software")
SOFTWARE = ("hf-dft-head", "numpy", "scipy", "highspy", "torch", "transformers", "huggingface-hub", "matplotlib")


class CertificateError(ValueError):
    """A certificate is missing, unreadable, or not of this format."""


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def bound_files(checkpoint: str | os.PathLike) -> list[str]:
    """Names of the top-level files a certificate binds to: ``config.json``, weights (and their index), ``*.py``.

    The remote-code ``*.py`` files are included because they decide what ``from_pretrained(...,
    trust_remote_code=True)`` computes.
    """
    folder = Path(checkpoint)
    names = []
    for path in sorted(folder.iterdir()):
        if not path.is_file():
            continue
        name = path.name
        if (
            name == "config.json"
            or name.endswith(WEIGHT_SUFFIXES)
            or (name.endswith(WEIGHT_INDEX_SUFFIX) and any(name.startswith(p) for p in ("model", "pytorch_model")))
            or name.endswith(".py")
        ):
            names.append(name)
    if "config.json" not in names:
        raise CertificateError(f"{folder} has no config.json: is it a saved checkpoint folder?")
    if not any(name.endswith(WEIGHT_SUFFIXES) for name in names):
        raise CertificateError(f"{folder} has no weights file (*.safetensors or *.bin).")
    return names


def software_versions() -> dict[str, str]:
    """Versions of Python and the packages the certificate's numbers depend on."""
    versions = {"python": platform.python_version()}
    for name in SOFTWARE:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            module = sys.modules.get(name.replace("-", "_"))
            versions[name] = str(getattr(module, "__version__", "not installed"))
    return versions


# ----------------------------------------------------------------------------------------------------------------
# The head's conditions
# ----------------------------------------------------------------------------------------------------------------


def count_rule_argmaxable_sets(num_labels: int, k: int) -> int:
    """Label sets of n labels with at most 2k sign changes in circle order: ``2 * sum_{i<=k} C(n, 2i)``."""
    return 2 * sum(math.comb(num_labels, 2 * i) for i in range(k + 1))


def check_dft_layer(model) -> dict[str, Any]:
    """Probe the checkpoint's DFT layer and head in float64 and compare them with ``G`` recomputed from (n, k).

    * ``gale_matrix``: the layer applied to the unit vectors ``e_0..e_{m-1}`` (its own forward path: FFT or
      matmul) gives its matrix column by column; the first 2k+1 columns must equal ``gale_matrix(n, k)`` and the
      rest the stored slack columns, to ``GALE_TOLERANCE`` (max abs error). Also ``|G^T G - I|_max``.
    * ``head_composition``: on 8 seeded random feature vectors ``h``, the head's output equals
      ``[G|S] (P h + c)`` computed in numpy, relative error below ``COMPOSITION_TOLERANCE``.
    """
    import torch

    config = model.config
    n, k, slack = int(config.num_labels), int(config.k), int(config.slack_dims)
    head = copy.deepcopy(model.head).double().eval()
    width = 2 * k + 1 + slack
    reference = gale_matrix(n, k)  # (n, 2k+1)
    with torch.no_grad():
        probed = head.dft(torch.eye(width, dtype=torch.float64)).numpy().T  # (n, width): column j = layer(e_j)
    gale_error = float(np.max(np.abs(probed[:, : 2 * k + 1] - reference)))
    slack_error = 0.0
    if slack:
        stored_slack = head.dft.slack.detach().numpy()
        slack_error = float(np.max(np.abs(probed[:, 2 * k + 1 :] - stored_slack)))
    orthonormality = float(np.max(np.abs(reference.T @ reference - np.eye(2 * k + 1))))

    weight, _ = model.effective_head()
    projection, offset = model.head_projection()
    generator = np.random.default_rng(0)
    features = generator.standard_normal((8, projection.shape[1]))
    expected = (features @ projection.T + offset) @ np.asarray(weight).T  # (8, n)
    with torch.no_grad():
        actual = head(torch.from_numpy(features)).numpy()
    composition_error = float(np.max(np.abs(actual - expected)) / max(np.max(np.abs(expected)), 1e-300))
    return {
        "gale_matrix": {
            "num_labels": n,
            "k": k,
            "dft_path": head.dft.resolved_path,
            "max_abs_error": gale_error,
            "slack_max_abs_error": slack_error,
            "orthonormality_max_abs_error": orthonormality,
            "tolerance": GALE_TOLERANCE,
            "passed": bool(max(gale_error, slack_error, orthonormality) <= GALE_TOLERANCE),
        },
        "head_composition": {
            "probe": "8 seeded N(0, 1) feature vectors, float64",
            "max_relative_error": composition_error,
            "tolerance": COMPOSITION_TOLERANCE,
            "passed": bool(composition_error <= COMPOSITION_TOLERANCE),
        },
    }


def check_projection_rank(projection: np.ndarray, weight_dtype: str = "float32") -> dict[str, Any]:
    """Is ``P`` ``(m, d)`` of full row rank m? Smallest/largest singular values and the tolerance used.

    Tolerance: ``sigma_max * max(m, d) * eps(weight dtype)`` (NumPy's ``matrix_rank`` rule, with the precision the
    weights are stored in rather than float64's).
    """
    rows, columns = projection.shape
    singular_values = np.linalg.svd(projection, compute_uv=False)
    eps = float(
        np.finfo(np.dtype(weight_dtype) if weight_dtype in ("float16", "float32", "float64") else np.float32).eps
    )
    sigma_max = float(singular_values[0]) if singular_values.size else 0.0
    sigma_min = float(singular_values[-1]) if rows <= columns else 0.0
    tolerance = sigma_max * max(rows, columns) * eps
    return {
        "shape": [rows, columns],
        "smallest_singular_value": sigma_min,
        "largest_singular_value": sigma_max,
        "condition_number": sigma_max / sigma_min if sigma_min > 0 else None,
        "tolerance": tolerance,
        "tolerance_rule": f"sigma_max * max(m, d) * eps({weight_dtype})",
        "full_row_rank": bool(rows <= columns and sigma_min > tolerance),
    }


def guarantee_statement(n: int, k: int, slack: int, projection_ok: bool, width: int, encoder_width: int) -> dict:
    """The guarantee of a DFT head, in words and as checkable parameters."""
    sets = (
        f"every label set with at most 2k = {2 * k} sign changes along the label circle (label ids 0..{n - 1} in "
        f"order, counted cyclically), in particular every set of at most k = {k} labels and every set of at least "
        f"n - k = {n - k} labels"
    )
    space = f"the head's input space x in R^{width} (x = P h + c)"
    if projection_ok:
        space += f", and the encoder's feature space h in R^{encoder_width}, because P has full row rank {width}"
    exact = slack == 0
    return {
        "statement": (
            f"For {sets}, there is an input of the head for which the model outputs exactly that set "
            f"(sigmoid > 0.5 on its labels, < 0.5 on the others). This holds in {space}. "
            + (
                f"For this pure DFT head (no slack) these are exactly the argmaxable sets: "
                f"{count_rule_argmaxable_sets(n, k)} of the 2^{n} label sets."
                if exact
                else f"The {slack} slack columns keep these sets argmaxable and may add others (decided by LP)."
            )
        ),
        "num_labels": n,
        "k": k,
        "max_sign_changes": 2 * k,
        "label_order": "label id order (angle t_j = 2 pi j / n)",
        "slack_dims": slack,
        "rule_is_exact": exact,
        "argmaxable_sets_by_rule": count_rule_argmaxable_sets(n, k),
        "spaces": ["head_input"] + (["encoder_features"] if projection_ok else []),
        "limits": [
            "The guarantee is about the output head: it does not say the encoder produces, for a given text, the "
            "features that yield a particular set.",
            "Regions can be very small (radius roughly n^-2 per isolated label): see the epsilon-argmaxable share "
            "and radius quantiles of the audit.",
        ],
    }


# ----------------------------------------------------------------------------------------------------------------
# Building, writing and verifying
# ----------------------------------------------------------------------------------------------------------------


def _load(checkpoint: Path):
    return audit.load_checkpoint(checkpoint)


def head_section(model, head: audit.SigmoidHead) -> tuple[dict, dict, dict | None, list[str]]:
    """``(head description, checks, guarantee or None, reasons not certified)`` from the loaded model alone."""
    head_info = {**head.describe(), "encoder_width": int(getattr(model.config, "hidden_size", head.width))}
    if head.kind != "dft":
        return head_info, {}, None, [f"head_kind={head.kind!r} has no structural argmaxability guarantee"]
    reasons = []
    checks = check_dft_layer(model)
    projection, _ = model.head_projection()
    checks["projection"] = check_projection_rank(projection, head.model_dtype)
    for name in ("gale_matrix", "head_composition"):
        if not checks[name]["passed"]:
            reasons.append(f"check {name} failed (error above its tolerance)")
    if not checks["projection"]["full_row_rank"]:
        reasons.append("the projection P does not have full row rank: the guarantee does not reach the encoder")
    guarantee = guarantee_statement(
        head.num_labels,
        head.dft_k,
        head.slack_dims,
        checks["projection"]["full_row_rank"],
        head.width,
        head_info["encoder_width"],
    )
    return head_info, checks, guarantee, reasons


def build_certificate(
    checkpoint: str | os.PathLike,
    spec: dict[str, Any],
    *,
    predictions: bool = True,
    epsilon: float = audit.DEFAULT_EPSILON,
    box: float | None = None,
    radii: bool = True,
    workers: int = 1,
    batch_size: int = 32,
    max_length: int = 128,
    progress: bool = True,
    figure_name: str = FIGURE_NAME,
    write_figure: bool = True,
) -> dict[str, Any]:
    """Everything the certificate says about ``checkpoint``, recomputed from its files (JSON-ready dict).

    ``spec`` names the data split of the empirical audit (see :func:`hf_dft_head.audit.dataset_spec`). With
    ``write_figure`` the figure is (re)written into the checkpoint; otherwise only its data series is computed.
    """
    checkpoint = Path(checkpoint)
    files = {name: sha256_file(checkpoint / name) for name in bound_files(checkpoint)}
    model, tokenizer = _load(checkpoint)
    head = audit.find_sigmoid_head(model)
    report = audit.audit_checkpoint(
        checkpoint,
        spec,
        predictions=predictions,
        epsilon=epsilon,
        box=box,
        radii=radii,
        workers=workers,
        batch_size=batch_size,
        max_length=max_length,
        progress=progress,
        loaded=(model, tokenizer),
    )
    report["model"]["path"] = "."  # the certificate lives in the checkpoint; paths are relative to it
    head_info, checks, guarantee, reasons = head_section(model, head)
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
    figure = {"path": figure_name, "series": audit.plot_series(report)}
    if write_figure:
        audit.write_plot(report, checkpoint / figure_name)
    if (checkpoint / figure_name).is_file():
        figure["sha256"] = sha256_file(checkpoint / figure_name)
    return {
        "certificate_format": CERTIFICATE_FORMAT,
        "format_version": CERTIFICATE_VERSION,
        "status": "certified" if not reasons else "not_certified",
        "reasons_not_certified": reasons,
        "files": files,
        "head": head_info,
        "guarantee": guarantee,
        "checks": checks,
        "audit": {key: report[key] for key in ("dataset", "prediction", "gold", "predicted") if key in report},
        "verifier": report["verifier"],
        "figure": figure,
        "created_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "software": software_versions(),
    }


def write_certificate(checkpoint: str | os.PathLike, certificate: dict[str, Any]) -> Path:
    """Write ``certificate`` as ``CERTIFICATE_NAME`` in ``checkpoint`` atomically (temp file + ``os.replace``)."""
    return audit.write_json(certificate, Path(checkpoint) / CERTIFICATE_NAME)


def read_certificate(checkpoint: str | os.PathLike) -> dict[str, Any]:
    """The certificate of ``checkpoint``; ``CertificateError`` if it is missing, unreadable or of another format."""
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
    return certificate


def certify(
    checkpoint: str | os.PathLike,
    spec: dict[str, Any],
    **options: Any,
) -> dict[str, Any]:
    """Build the certificate of ``checkpoint`` (see :func:`build_certificate` for ``options``) and write it there.

    Returns the certificate. Dense/bottleneck heads get a ``"not_certified"`` file with their audit.
    """
    certificate = build_certificate(checkpoint, spec, **options)
    write_certificate(checkpoint, certificate)
    return certificate


@dataclass
class Verification:
    """What ``verify`` found: ``mismatches`` (empty when everything matches), what was ``checked`` and ``skipped``."""

    checkpoint: str
    mismatches: list[str] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    status: str | None = None

    @property
    def ok(self) -> bool:
        """True when nothing differs (a ``not_certified`` certificate can be ``ok``: it is accurate, not a pass)."""
        return not self.mismatches

    def summary(self) -> str:
        """Human-readable lines: verdict, mismatches, checks."""
        verdict = "OK" if self.ok else f"FAILED ({len(self.mismatches)} mismatches)"
        lines = [f"Verification of {self.checkpoint}: {verdict}; certificate status: {self.status}"]
        lines += [f"  MISMATCH {m}" for m in self.mismatches]
        lines += [f"  checked  {c}" for c in self.checked]
        lines += [f"  skipped  {s}" for s in self.skipped]
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


def verify_checkpoint(
    checkpoint: str | os.PathLike,
    *,
    recheck_audit: bool = True,
    dataset: str | None = None,
    workers: int = 1,
    progress: bool = True,
) -> Verification:
    """Recompute the certificate of ``checkpoint`` and compare: hashes, head checks, audit figures, figure file.

    ``dataset`` replaces the recorded dataset location (e.g. the data lives elsewhere on this machine); the data's
    fingerprint is still compared. ``recheck_audit=False`` skips the audit recomputation (reported as skipped).
    Returns a :class:`Verification`; raises ``CertificateError`` when there is no readable certificate.
    """
    checkpoint = Path(checkpoint)
    recorded = read_certificate(checkpoint)
    result = Verification(str(checkpoint), status=recorded.get("status"))

    # 1. The files the certificate binds to: same set, same bytes.
    recorded_files = recorded.get("files") or {}
    present = bound_files(checkpoint)
    for name, digest in sorted(recorded_files.items()):
        path = checkpoint / name
        if not path.is_file():
            result.mismatches.append(f"file {name}: listed in the certificate but missing from the checkpoint")
        elif sha256_file(path) != digest:
            what = "weights" if name.endswith(WEIGHT_SUFFIXES) else "file"
            result.mismatches.append(
                f"file {name}: sha256 differs from the certificate (the {what} changed after certification)"
            )
    for name in present:
        if name not in recorded_files:
            result.mismatches.append(f"file {name}: not covered by the certificate (added after certification)")
    result.checked.append(f"sha256 of {len(recorded_files)} files ({', '.join(sorted(recorded_files))})")

    # 2. The figure file.
    figure = recorded.get("figure") or {}
    figure_path = checkpoint / str(figure.get("path", FIGURE_NAME))
    if "sha256" in figure:
        if not figure_path.is_file():
            result.mismatches.append(f"figure {figure_path.name}: missing from the checkpoint")
        elif sha256_file(figure_path) != figure["sha256"]:
            result.mismatches.append(f"figure {figure_path.name}: sha256 differs from the certificate (figure edited)")
        result.checked.append(f"sha256 of the figure {figure_path.name}")

    # 3. Everything else, recomputed from the files with the recorded settings.
    recorded_audit = recorded.get("audit") or {}
    spec = {
        key: value
        for key, value in (recorded_audit.get("dataset") or {}).items()
        if key not in ("examples", "fingerprint_sha256", "labels_unknown_to_model")
    }
    if dataset is not None:
        spec["dataset"] = audit.dataset_spec(dataset, spec.get("split", "test"))["dataset"]
    verifier = recorded.get("verifier") or {}
    if not recheck_audit:
        result.skipped.append("audit figures (not recomputed: --skip-audit)")
    try:
        recomputed = (
            build_certificate(
                checkpoint,
                spec,
                predictions="predicted" in recorded_audit,
                epsilon=float(verifier.get("epsilon", audit.DEFAULT_EPSILON)),
                box=verifier.get("box"),
                radii=not verifier.get("rule_only", False),
                workers=workers,
                batch_size=int((recorded_audit.get("prediction") or {}).get("batch_size", 32)),
                max_length=int((recorded_audit.get("prediction") or {}).get("max_length", 128)),
                progress=progress,
                figure_name=figure_path.name,
                write_figure=False,
            )
            if recheck_audit
            else _rebuild_head_only(checkpoint)
        )
    except (OSError, ValueError) as error:
        result.mismatches.append(f"recomputation failed: {error}")
        return result
    compared_recorded = {k: v for k, v in recorded.items() if k not in (*UNCHECKED_FIELDS, "files")}
    compared_new = {k: v for k, v in recomputed.items() if k not in (*UNCHECKED_FIELDS, "files")}
    compared_recorded["figure"] = {k: v for k, v in figure.items() if k != "sha256"}
    compared_new["figure"] = {k: v for k, v in (compared_new.get("figure") or {}).items() if k != "sha256"}
    if dataset is not None:
        for tree in (compared_recorded, compared_new):
            tree.get("audit", {}).get("dataset", {}).pop("dataset", None)
    if not recheck_audit:
        compared_recorded = {key: compared_recorded.get(key) for key in ("head", "checks", "guarantee")}
        compared_new = {key: compared_new.get(key) for key in ("head", "checks", "guarantee")}
    result.mismatches.extend(diff_certificates(compared_recorded, compared_new))
    result.checked.append("head checks (G probe, head composition, singular values of P) and the guarantee")
    if recheck_audit:
        result.checked.append(
            f"audit figures on {spec.get('dataset')} split={spec.get('split')} (gold"
            + (" and predicted" if "predicted" in recorded_audit else "")
            + " sets) and the figure's data"
        )
    return result


def _rebuild_head_only(checkpoint: Path) -> dict[str, Any]:
    """The parts of a certificate that need no data: the head description, checks and guarantee."""
    model, _ = _load(checkpoint)
    head_info, checks, guarantee, _ = head_section(model, audit.find_sigmoid_head(model))
    return {"head": head_info, "checks": checks, "guarantee": guarantee}


# ----------------------------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------------------------


def add_certify_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Arguments of ``hf-dft certify CHECKPOINT --dataset ... [--split test]``."""
    parser.add_argument("checkpoint", help="checkpoint folder (the certificate and figure are written into it)")
    # Optional: a checkpoint written by `hf-dft train` records its data, and is certified on it by default.
    audit.add_dataset_arguments(parser, required=False)
    audit.add_verifier_arguments(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def training_data_of(checkpoint: Path, split: str) -> tuple[str, str, str | None]:
    """``(dataset, text_column, label_column)`` of the data ``hf-dft train`` recorded in ``training_args.json``.

    The bundled disaster-response messages when the run used the defaults; the ``SPLIT=PATH`` file of
    ``split`` when it trained from ``--data-files``; its ``--dataset`` otherwise.
    """
    path = checkpoint / "training_args.json"
    if not path.is_file():
        raise ValueError(f"{checkpoint} has no training_args.json to take the data from: pass --dataset.")
    recorded = json.loads(path.read_text(encoding="utf-8"))
    text_column, label_column = recorded.get("text_column", "text"), recorded.get("label_column")
    if recorded.get("dataset"):
        return recorded["dataset"], text_column, label_column
    files = recorded.get("data_files") or []
    if not files:
        return "disaster_response", text_column, label_column
    for entry in files:
        name, _, file = entry.partition("=")
        if file and name == split:
            return file, text_column, label_column
    raise ValueError(f"The run's --data-files {files} name no {split!r} file: pass --dataset and --split.")


def run_certify(args: argparse.Namespace) -> int:
    """Run ``hf-dft certify``; exit code 0 when certified, 1 when the checkpoint cannot be certified."""
    checkpoint = Path(args.checkpoint)
    if not checkpoint.is_dir():
        print(f"hf-dft certify: error: {checkpoint} is not a checkpoint folder", file=sys.stderr)
        return 2
    try:
        if args.dataset is None:
            args.dataset, args.text_column, args.label_column = training_data_of(checkpoint, args.split)
        certificate = certify(checkpoint, audit.spec_from_args(args), **audit.verifier_options(args))
    except ValueError as error:
        print(f"hf-dft certify: error: {error}", file=sys.stderr)
        return 2
    print(format_certificate(certificate))
    print(f"Wrote {checkpoint / CERTIFICATE_NAME} and {checkpoint / certificate['figure']['path']}")
    return 0 if certificate["status"] == "certified" else 1


def format_certificate(certificate: dict[str, Any]) -> str:
    """A few lines saying what the certificate guarantees and what the audit found."""
    gold = certificate["audit"]["gold"]
    lines = [f"Status: {certificate['status']}"]
    if certificate["guarantee"]:
        lines.append("Guarantee: " + certificate["guarantee"]["statement"])
        projection = certificate["checks"]["projection"]
        lines.append(
            f"Checks: G max error {certificate['checks']['gale_matrix']['max_abs_error']:.2e} "
            f"(tol {GALE_TOLERANCE:g}); sigma_min(P) = {projection['smallest_singular_value']:.4g} "
            f"(tol {projection['tolerance']:.3g})"
        )
    lines += [f"Not certified: {reason}" for reason in certificate["reasons_not_certified"]]
    lines.append(
        f"Audit ({certificate['audit']['dataset']['dataset']} / {certificate['audit']['dataset']['split']}): "
        f"{gold['argmaxable']} of {gold['distinct_sets']} distinct gold sets argmaxable, {gold['unargmaxable']} never "
        f"outputtable, {gold['undecided']} undecided"
    )
    return "\n".join(lines)


def add_verify_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Arguments of ``hf-dft verify CHECKPOINT_OR_REPO [--revision R] [--dataset D] [--skip-audit]``."""
    parser.add_argument("checkpoint", help="checkpoint folder, or a Hub repo id (user/repo) to download")
    parser.add_argument("--revision", default=None, help="revision of a Hub repo (default: main)")
    parser.add_argument("--dataset", default=None, help="where the audit's data is on this machine, if moved")
    parser.add_argument("--skip-audit", action="store_true", help="do not recompute the audit figures")
    parser.add_argument("--workers", type=int, default=1, help="processes for the LP verifier (default 1)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def resolve_checkpoint(name: str, revision: str | None = None) -> Path:
    """A local folder as is; otherwise a Hub repo id, downloaded (snapshot) into the Hugging Face cache."""
    if Path(name).is_dir():
        return Path(name)
    if name.startswith((".", "/", "~")) or name.count("/") > 1 or Path(name).exists():
        # A path, not a repo id ("namespace/name"): say so instead of asking the Hub about it.
        raise ValueError(f"{name} is not a checkpoint folder (and not a Hub repo id of the form namespace/name).")
    from .hub import download_checkpoint

    return download_checkpoint(name, revision=revision)


def run_verify(args: argparse.Namespace) -> int:
    """Run ``hf-dft verify``; 0 when everything matches, 1 on any mismatch, 2 when it cannot run."""
    try:
        folder = resolve_checkpoint(args.checkpoint, getattr(args, "revision", None))
        result = verify_checkpoint(
            folder,
            recheck_audit=not args.skip_audit,
            dataset=args.dataset,
            workers=args.workers,
            progress=not args.quiet,
        )
    except ValueError as error:
        print(f"hf-dft verify: error: {error}", file=sys.stderr)
        return 2
    print(result.summary())
    return 0 if result.ok else 1
