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

import copy
import datetime as dt
import hashlib
import json
import math
import os
import platform
import tempfile
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import audit, sharding
from .argmax import count_dft_argmaxable
from .audit_report import AUDIT_FIGURE_NAME, plot_series, write_plot
from .checkpoints import (
    CERTIFICATE_NAME,
    UNBOUND_REPO_FILES,
    FileInventory,
    bound_files,
    hash_files,
    load_checkpoint,
    sha256_file,
)
from .configuration import DFTConfig
from .data import DataSpec
from .gale import dft_width, gale_matrix
from .output_checks import write_json
from .remote_code import (
    PROBE_TEXTS,
    check_auto_maps,
    check_code_files,
    package_text_logits,
    probe_remote_code,
    remote_code_problems,
)
from .sigmoid_head import SigmoidHead, describe_thresholds, find_sigmoid_head
from .version import __version__

FIGURE_NAME = AUDIT_FIGURE_NAME
CERTIFICATE_FORMAT = "hf-dft-head/argmaxability-certificate"
CERTIFICATE_VERSION = 2
# Float64 tolerances of the head checks; float64 FFT / matmul errors are ~1e-15 at these sizes.
GALE_TOLERANCE = 1e-10
COMPOSITION_TOLERANCE = 1e-9
# Numbers recomputed by verify must match the certificate to this relative tolerance (LP radii may differ in the
# last digits across machines/BLAS builds); counts, strings and hashes must match exactly.
VERIFY_RTOL = 1e-5
VERIFY_ATOL = 1e-12
# The probe's logit projections: |difference| <= PROBE_RTOL * |logits|_2 * |projection vector|_2 (Cauchy-Schwarz).
PROBE_RTOL = 1e-5
PROBE_PROJECTIONS = 8
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
# The head's conditions
# ----------------------------------------------------------------------------------------------------------------


def check_dft_layer(model) -> dict[str, Any]:
    """Probe the package-loaded DFT layer and head in float64 and compare them with ``G`` recomputed from (n, k).

    * ``gale_matrix``: the layer applied to the unit vectors ``e_0..e_{m-1}`` (its own forward path: FFT or
      matmul) gives its matrix column by column; the first 2k+1 columns must equal ``gale_matrix(n, k)`` with its
      rows taken in the config's ``label_order``, and the rest the stored slack columns, to ``GALE_TOLERANCE`` (max
      abs error). Also ``|G^T G - I|_max``.
    * ``head_composition``: on 8 seeded random feature vectors ``h``, the head's output equals
      ``[G|S] (P h + c)`` computed in numpy, relative error below ``COMPOSITION_TOLERANCE``.

    The same comparison through the checkpoint's *own* code is :func:`hf_dft_head.remote_code.probe_remote_code`.
    """
    config = model.config
    n, k, slack = int(config.num_labels), int(config.k), int(config.slack_dims)
    head = copy.deepcopy(model.head).double().eval()
    width, rule_width = dft_width(k, slack), dft_width(k)
    reference = gale_matrix(n, k)  # (n, 2k+1), rows in circle order
    if getattr(config, "label_order", None) is not None:
        reference = reference[np.asarray(config.label_order, dtype=np.int64)]  # row i: label i's circle position
    with torch.no_grad():
        probed = head.dft(torch.eye(width, dtype=torch.float64)).numpy().T  # (n, width): column j = layer(e_j)
    gale_error = float(np.max(np.abs(probed[:, :rule_width] - reference)))
    slack_error = 0.0
    if slack:
        stored_slack = head.dft.slack.detach().numpy()
        slack_error = float(np.max(np.abs(probed[:, rule_width:] - stored_slack)))
    orthonormality = float(np.max(np.abs(reference.T @ reference - np.eye(rule_width))))

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


def guarantee_statement(
    n: int,
    k: int,
    slack: int,
    projection_ok: bool,
    width: int,
    encoder_width: int,
    model_dtype: str,
    label_order: str | None = None,
) -> dict:
    """The guarantee of a DFT head: what holds in exact arithmetic, what was checked in the model's dtype.

    ``label_order``: ``None`` (label ids are circle positions) or the description of the config's ``label_order``.
    """
    circle = (
        f"label ids 0..{n - 1} in order"
        if label_order is None
        else f"label i at position label_order[i] of config.json, {label_order}"
    )
    sets = (
        f"every label set with at most 2k = {2 * k} sign changes along the label circle ({circle}, counted "
        f"cyclically), in particular every set of at most k = {k} labels and every set of at least n - k = {n - k} "
        "labels"
    )
    space = f"the head's input space x in R^{width} (x = P h + c)"
    if projection_ok:
        space += f", and the encoder's feature space h in R^{encoder_width}, because P has full row rank {width}"
    exact = slack == 0
    return {
        "statement": (
            f"In exact arithmetic: for {sets}, there is an input of the head for which the logits are positive "
            f"exactly on that set (sigmoid > 0.5 on its labels, < 0.5 on the others). This is a theorem about the "
            f"exact Gale matrix G, which the layer computes up to rounding (checked: see checks.gale_matrix). It "
            f"holds in {space}. "
            + (
                f"For this pure DFT head (no slack) these are exactly the argmaxable sets: "
                f"{count_dft_argmaxable(n, k)} of the 2^{n} label sets."
                if exact
                else f"The {slack} slack columns keep these sets argmaxable and may add others (decided by LP)."
            )
            + f" In the model's dtype ({model_dtype}) a set's region can be thinner than the rounding of the logits "
            "(tiny regions): the audit checks every gold and predicted set with a witness whose signs hold both in "
            f"exact rational arithmetic and when the logits are computed in {model_dtype}, and reports the sets "
            "whose region is at least epsilon wide (epsilon-argmaxable)."
        ),
        "num_labels": n,
        "k": k,
        "max_sign_changes": 2 * k,
        "label_order": label_order or "label id order (angle t_j = 2 pi j / n)",
        "slack_dims": slack,
        "rule_is_exact": exact,
        "argmaxable_sets_by_rule": count_dft_argmaxable(n, k),
        "spaces": ["head_input"] + (["encoder_features"] if projection_ok else []),
        "exact_arithmetic": True,
        "checked_in_dtype": model_dtype,
        "limits": [
            "The guarantee is about the output head: it does not say the encoder produces, for a given text, the "
            "features that yield a particular set.",
            "Regions can be very small (radius roughly n^-2 per isolated label): see the epsilon-argmaxable share "
            "and radius quantiles of the audit.",
        ],
    }


def head_section(model, head: SigmoidHead) -> tuple[dict, dict, dict | None, list[str]]:
    """``(head description, checks, guarantee or None, reasons not certified)`` from the package-loaded model."""
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
        head.model_dtype,
        head_info["label_order"],
    )
    return head_info, checks, guarantee, reasons


def thresholds_section(head: SigmoidHead) -> tuple[dict[str, Any], str | None]:
    """The ``thresholds`` section (the config's ``logit_thresholds`` and what they do to the guarantee) and the
    reason not to certify, if any: an infinite threshold on a DFT head (:mod:`hf_dft_head.thresholds`).

    Finite per-label thresholds keep the guarantee: a DFT head is linear in its input (``z = W x``, no bias), so if
    ``W x`` has a set's signs with margin ``delta > 0``, ``W (s x) - t`` has them for every ``s > max|t| / delta``.
    An infinite threshold fixes its label (never / always predicted) and loses every set that says otherwise.
    """
    kind, thresholds = head.thresholds_kind, head.logit_thresholds
    finite = thresholds is None or bool(np.all(np.isfinite(thresholds)))
    covers = None if head.kind != "dft" else finite
    statement = {
        "none": "The model predicts label i iff z_i > 0 (sigmoid > 0.5): the head the guarantee is about.",
        "uniform": "A uniform threshold t is a bias -t on every label, which G's constant column absorbs (x_0 moves "
        "by t sqrt(n)): the model outputs exactly the sets the head outputs at threshold 0, and the rule decides.",
        "per_label": "Per-label thresholds t act as a bias -t outside the head's column space, so the sign-change "
        "rule no longer decides which sets the model outputs (z > t): the audit decides every set for the "
        "thresholded head by LP.",
    }[kind]
    if covers and kind == "per_label":
        statement += (
            " Every set the guarantee names stays argmaxable for the model as it predicts: the head is linear in x, "
            "so if W x has the set's signs with margin delta > 0, W (s x) - t has them for s > max|t| / delta (exact "
            "arithmetic; in the head's input space and, P having full row rank, the encoder's). The set's region "
            "moves outwards (the audit's radii inside the box measure this), and sets beyond the rule may become "
            "outputtable."
        )
    elif covers is False:
        statement += (
            " Infinite thresholds fix their labels (+inf: never predicted, -inf: always), so every set that says "
            "otherwise is lost: the guarantee does not hold for the model as it predicts."
        )
    section = {
        "logit_thresholds": describe_thresholds(thresholds),
        "kind": kind,
        "finite": finite,
        "uniform_value": float(thresholds[0]) if kind == "uniform" else None,
        "rule": "label i predicted iff z_i > logit_thresholds[i] of config.json"
        if thresholds is not None
        else "label i predicted iff z_i > 0",
        "rule_decides": head.rule_applies if head.kind == "dft" else None,
        "guarantee_covers_predictions": covers,
        "statement": statement,
    }
    reason = None
    if covers is False:
        reason = (
            "config.json sets infinite logit_thresholds: their labels are never (+inf) or always (-inf) predicted, so "
            "sets within the guarantee are lost; use finite thresholds (hf-dft tune-thresholds writes finite ones)"
        )
    return section, reason


def is_package_model(model) -> bool:
    """A model of this package (it ships remote code and takes ``encoder_features``), not a stock classifier."""
    return hasattr(model, "effective_head") and getattr(model.config, "head_kind", None) is not None


# ----------------------------------------------------------------------------------------------------------------
# The probe of the tokenizer and the whole model
# ----------------------------------------------------------------------------------------------------------------


def _probe_vectors(num_labels: int) -> np.ndarray:
    return np.random.default_rng(1).standard_normal((num_labels, PROBE_PROJECTIONS))


def text_probe(model, tokenizer, max_length: int = 128) -> dict[str, Any] | None:
    """What the tokenizer and the whole model do with the fixed probe texts, compactly.

    ``token_ids_sha256`` hashes the token ids (a changed vocabulary shows here); per text, the logits' L2 norm and
    their projections on ``PROBE_PROJECTIONS`` seeded random directions (changed weights show here). ``None``
    without a tokenizer.
    """
    if tokenizer is None:
        return None
    input_ids, logits = package_text_logits(model, tokenizer, max_length)
    return {
        "texts": len(PROBE_TEXTS),
        "num_labels": int(logits.shape[1]),
        "max_length": max_length,
        "token_ids_sha256": hashlib.sha256(json.dumps(input_ids.tolist()).encode()).hexdigest(),
        "logit_norms": np.linalg.norm(logits, axis=1).tolist(),
        "logit_projections": (logits @ _probe_vectors(logits.shape[1])).tolist(),
        "tolerance": PROBE_RTOL,
    }


def compare_text_probe(recorded: Any, recomputed: dict[str, Any] | None) -> list[str]:
    """Named differences between a recorded and a recomputed probe.

    A projection on direction ``v`` may move by ``PROBE_RTOL * |logits|_2 * |v|_2`` (what a relative change of
    ``PROBE_RTOL`` in the logits can do, by Cauchy-Schwarz); norms by ``PROBE_RTOL`` relative.
    """
    if recomputed is None:
        return [] if recorded is None else ["probe: the checkpoint has no loadable tokenizer any more"]
    if not isinstance(recorded, dict) or set(recorded) != set(recomputed):
        return ["probe: malformed in the certificate (its keys differ from a recomputed probe's)"]
    problems = [
        f"probe.{key}: certificate says {recorded[key]!r}, recomputed {recomputed[key]!r}"
        for key in ("texts", "num_labels", "max_length", "tolerance")
        if recorded[key] != recomputed[key]
    ]
    if recorded["token_ids_sha256"] != recomputed["token_ids_sha256"]:
        problems.append(
            "tokenizer: the token ids of the probe texts differ from the certificate's (tokenizer.json, vocab or "
            "tokenizer_config.json changed after certification, or another `tokenizers` version)"
        )
    try:
        norms = np.asarray(recorded["logit_norms"], dtype=np.float64)
        projections = np.asarray(recorded["logit_projections"], dtype=np.float64)
    except (TypeError, ValueError):
        return [*problems, "probe: the logit figures in the certificate are not numbers"]
    new_norms = np.asarray(recomputed["logit_norms"], dtype=np.float64)
    new_projections = np.asarray(recomputed["logit_projections"], dtype=np.float64)
    if norms.shape != new_norms.shape or projections.shape != new_projections.shape:
        return [*problems, "probe: the number of probe texts or projections differs from the certificate's"]
    norm_bound = PROBE_RTOL * np.maximum(new_norms, 1e-30)
    vector_norms = np.linalg.norm(_probe_vectors(recomputed["num_labels"]), axis=0)  # (PROBE_PROJECTIONS,)
    if np.any(np.abs(norms - new_norms) > norm_bound) or np.any(
        np.abs(projections - new_projections) > norm_bound[:, None] * vector_norms[None, :]
    ):
        problems.append(
            "model outputs: the logits on the probe texts differ from the certificate's (weights or tokenizer "
            "changed after certification)"
        )
    return problems


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


def code_section(checkpoint: Path, files: list[str]) -> tuple[dict[str, Any] | None, list[str]]:
    """The ``checks.code`` section (code files identical to the package's, auto_maps) and its problems.

    ``None`` for a checkpoint that is not of this package (a stock classifier ships no code of ours).
    """
    try:
        config = json.loads((checkpoint / "config.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as error:
        return None, [f"config.json: unreadable ({error})"]
    if not isinstance(config, dict) or config.get("model_type") != DFTConfig.model_type:
        return None, []
    code, code_problems = check_code_files(checkpoint, files)
    auto_maps, map_problems = check_auto_maps(checkpoint)
    problems = code_problems + map_problems
    return {**code, **auto_maps, "passed": not problems}, problems


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
    ``spec``, the audit. ``code`` is the :func:`code_section`; ``remote_probe`` also runs the checkpoint's own code
    in a separate interpreter (only meaningful when ``code`` passed)."""
    model, tokenizer = load_checkpoint(checkpoint)
    head = find_sigmoid_head(model)
    head_info, checks, guarantee, reasons = head_section(model, head)
    thresholds, thresholds_reason = thresholds_section(head)
    reasons += [thresholds_reason] if thresholds_reason else []
    out = _Recomputed(
        {"head": head_info, "guarantee": guarantee, "thresholds": thresholds}, model=model, tokenizer=tokenizer
    )
    if code is not None:
        checks["code"] = code
        if remote_probe:
            checks["remote_code"] = probe_remote_code(checkpoint, model, tokenizer, max_length=options.max_length)
            out.problems += remote_code_problems(checks["remote_code"])
    out.sections["checks"] = checks
    out.sections["probe"] = text_probe(model, tokenizer, options.max_length)
    if spec is not None:
        report = audit.audit_checkpoint(checkpoint, spec, options, progress=progress, loaded=(model, tokenizer))
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
    out.sections["options"] = options.recorded()
    out.sections["reasons"] = reasons
    return out


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


# ----------------------------------------------------------------------------------------------------------------
# Helpers of the command line
# ----------------------------------------------------------------------------------------------------------------


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
