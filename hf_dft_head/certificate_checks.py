"""The sections of a certificate that check the checkpoint itself: its head, guarantee, thresholds, code and texts.

:mod:`hf_dft_head.certificate` builds a certificate from these and ``verify`` recomputes them:

* the head's conditions (:func:`check_dft_layer`, :func:`check_projection_rank`), read together by
  :func:`head_section`, and the precise statement of the guarantee they support (:func:`guarantee_statement`);
* what the config's ``logit_thresholds`` do to that guarantee (:func:`thresholds_section`);
* the code the checkpoint ships (:func:`code_section`: byte-identical to the package's, ``auto_map``);
* a probe of the tokenizer and the whole model on fixed texts (:func:`text_probe`, :func:`compare_text_probe`).
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .argmax import count_dft_argmaxable
from .configuration import DFTConfig
from .gale import dft_width, gale_matrix
from .remote_code import PROBE_TEXTS, check_auto_maps, check_code_files, package_text_logits
from .sigmoid_head import SigmoidHead, describe_thresholds

# Float64 tolerances of the head checks; float64 FFT / matmul errors are ~1e-15 at these sizes.
GALE_TOLERANCE = 1e-10
COMPOSITION_TOLERANCE = 1e-9
# The probe's logit projections: |difference| <= PROBE_RTOL * |logits|_2 * |projection vector|_2 (Cauchy-Schwarz).
PROBE_RTOL = 1e-5
PROBE_PROJECTIONS = 8


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


# ----------------------------------------------------------------------------------------------------------------
# The code the checkpoint ships
# ----------------------------------------------------------------------------------------------------------------


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
    auto_maps, map_problems = check_auto_maps(checkpoint, config)
    problems = code_problems + map_problems
    return {**code, **auto_maps, "passed": not problems}, problems


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
