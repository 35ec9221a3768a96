"""Model cards for (certified) checkpoints, rendered with ``huggingface_hub.ModelCard`` from the package template.

The card's metadata carries ``library_name``, ``tags``, ``datasets``, ``base_model``, ``pipeline_tag`` and a
``model-index`` with the quality metrics and the argmaxability figures of the certificate's audit split. Every
number the card shows comes from the certificate, which ``hf-dft push`` verifies (recomputes) before rendering;
when the audit was not re-checked (``audit_verified=False``) the card shows no audit or quality numbers at all.
The text states the guarantee in plain language with its limits,
shows the audit table and figure, how to load the model (plugin and remote code) and how it was trained (from
``training_args.json``, if present). The template is ``hf_dft_head/templates/model_card.md`` (package data).

The card takes the checkpoint's records as dicts (:func:`hf_dft_head.checkpoints.read_card_inputs` reads them from
a folder and validates the config's ``label_order``) and imports nothing of this package: it renders, it does not
check.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

QUALITY_PREFIXES = ("p@", "r@", "f1@", "ndcg@")
QUALITY_NAMES = ("micro_f1", "macro_f1", "exact_match")
SPLIT_NAMES = ("validation", "test")
TRAINING_FIELDS = (
    "encoder",
    "encoder_layers",
    "dataset",
    "head",
    "k",
    "slack_dims",
    "pooling",
    "freeze_encoder",
    "epochs",
    "batch_size",
    "learning_rate",
    "encoder_learning_rate",
    "max_length",
    "metric_for_best",
    "seed",
)
TASK = {"task_type": "text-classification", "task_name": "Multi-label text classification"}


def template_path() -> Path:
    """Path of the packaged model-card template."""
    return Path(str(resources.files("hf_dft_head") / "templates" / "model_card.md"))


def quality_metrics(certificate: dict[str, Any] | None) -> list[tuple[str, str, float]]:
    """``(split, metric, value)`` of the quality metrics the certificate's audit computed on its split."""
    audit = (certificate or {}).get("audit") or {}
    split = str((audit.get("dataset") or {}).get("split", "test"))
    return [(split, name, float(value)) for name, value in (audit.get("quality") or {}).items() if _number(value)]


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _dataset_names(audit_dataset: dict[str, Any]) -> tuple[str, str]:
    """``(dataset_type, dataset_name)`` for model-index entries: the Hub id or a short local name."""
    source = str(audit_dataset.get("dataset", "unknown"))
    if source == "disaster_response":
        return "disaster_response", "Disaster response messages"
    if os.path.isabs(source) or os.path.exists(source):
        stem = Path(source).name.split(".")[0]
        return stem, stem
    return source, source


def build_card_data(
    config: dict[str, Any],
    certificate: dict[str, Any] | None,
    *,
    model_name: str,
    base_model: str | None = None,
    datasets: list[str] | None = None,
    license: str | None = None,
) -> ModelCardData:
    """The card's YAML metadata: library, tags, datasets, base model, pipeline tag and model-index results."""
    head_kind = config.get("head_kind", "dense")
    tags = ["hf-dft-head", "multi-label-classification", f"{head_kind}-head"]
    if certificate and certificate.get("status") == "certified":
        tags += ["argmaxability-certified"]
    results: list[EvalResult] = []
    audit = (certificate or {}).get("audit") or {}
    dataset_type, dataset_name = _dataset_names(audit.get("dataset") or {})
    hub_dataset = datasets[0] if datasets else None
    for split, metric, value in quality_metrics(certificate):
        results.append(
            EvalResult(
                **TASK,
                dataset_type=hub_dataset or dataset_type,
                dataset_name=dataset_name,
                dataset_split=split,
                metric_type=metric,
                metric_name=metric,
                metric_value=round(value, 6),
            )
        )
    for part in ("gold", "predicted"):
        figures = audit.get(part)
        if not figures:
            continue
        entries = [("argmaxable_share", figures.get("argmaxable_share"))]
        if figures.get("epsilon_argmaxable_share") is not None:
            entries.append(("epsilon_argmaxable_share", figures["epsilon_argmaxable_share"]))
        entries.append(("unargmaxable_sets", figures.get("unargmaxable")))
        for metric, value in entries:
            if value is None:
                continue
            results.append(
                EvalResult(
                    **TASK,
                    dataset_type=hub_dataset or dataset_type,
                    dataset_name=dataset_name,
                    dataset_split=str((audit.get("dataset") or {}).get("split")),
                    metric_type=f"{metric}_{part}_label_sets",
                    metric_name=f"{metric.replace('_', ' ')} ({part} label sets)",
                    metric_value=round(value, 6) if isinstance(value, float) else value,
                )
            )
    return ModelCardData(
        model_name=model_name,
        library_name="transformers",
        pipeline_tag="text-classification",
        tags=tags,
        datasets=datasets or None,
        base_model=base_model,
        license=license,
        eval_results=results or None,
    )


def _base_model_from(config: dict[str, Any], training_args: dict[str, Any] | None) -> str | None:
    """A Hub id for ``base_model`` when the checkpoint names one (a local path is not a Hub id)."""
    for candidate in ((training_args or {}).get("base_model"), (training_args or {}).get("encoder")):
        if isinstance(candidate, str) and candidate.count("/") == 1 and not os.path.exists(candidate):
            return candidate
    return None


def render_model_card(
    config: dict[str, Any],
    certificate: dict[str, Any] | None = None,
    training_args: dict[str, Any] | None = None,
    *,
    repo_id: str,
    base_model: str | None = None,
    datasets: list[str] | None = None,
    license: str | None = None,
    template: str | os.PathLike | None = None,
    audit_verified: bool = True,
) -> ModelCard:
    """The model card of a checkpoint from its ``config.json``, certificate and ``training_args.json`` (dicts, the
    last two ``None`` when absent), as :func:`hf_dft_head.checkpoints.read_card_inputs` returns them.

    ``repo_id`` appears in the loading snippets. ``base_model``/``datasets``/``license`` fill the metadata;
    ``base_model`` otherwise comes from ``training_args`` when it names a Hub id. ``audit_verified=False`` (the
    audit was not recomputed before rendering): no audit or quality numbers.
    """
    if certificate is not None and not audit_verified:
        certificate = {key: value for key, value in certificate.items() if key not in ("audit", "verifier", "figure")}
    model_name = repo_id.split("/")[-1]
    base_model = base_model or _base_model_from(config, training_args)
    card_data = build_card_data(
        config,
        certificate,
        model_name=model_name,
        base_model=base_model,
        datasets=datasets,
        license=license,
    )
    card = ModelCard.from_template(
        card_data,
        template_path=str(template or template_path()),
        **_template_values(config, certificate, training_args, repo_id=repo_id, base_model=base_model),
    )
    return card


def _template_values(
    config: dict[str, Any],
    certificate: dict[str, Any] | None,
    training_args: dict[str, Any] | None,
    *,
    repo_id: str,
    base_model: str | None,
) -> dict[str, Any]:
    """Everything the template shows, as strings and small row dicts."""
    certificate = certificate or {}
    head_kind = config.get("head_kind", "dense")
    n = int(config.get("num_labels") or len(config.get("id2label") or {}))
    certified = certificate.get("status") == "certified"
    guarantee = certificate.get("guarantee") or {}
    audit = certificate.get("audit") or {}
    dataset = audit.get("dataset") or {}
    verifier = certificate.get("verifier") or {}
    quality_rows, quality_splits = _quality_table(certificate)
    names = _labels_around_the_circle(config, n)
    return {
        "model_name": repo_id.split("/")[-1],
        "repo_id": repo_id,
        "head_kind": head_kind,
        "head_title": _head_title(config),
        "encoder_description": _encoder_description(config, base_model),
        "num_labels": n,
        "certified": certified,
        "plain_guarantee": _plain_guarantee(config, guarantee, n) if certified else "",
        "guarantee_statement": guarantee.get("statement", ""),
        "limits": list(guarantee.get("limits") or [])
        + ["Quality figures are measured on one data split; the guarantee says nothing about accuracy."],
        "checks": _check_rows(certificate.get("checks") or {}),
        "not_certified_reasons": "; ".join(certificate.get("reasons_not_certified") or ["no certificate found"]),
        "audit_dataset": _dataset_names(dataset)[1],
        "audit_split": dataset.get("split", "?"),
        "epsilon": _format(verifier.get("epsilon", "?")),
        "epsilon_radius": _format(verifier.get("epsilon_radius", "?")),
        "box": _format(verifier.get("box", "?")),
        "audit_verified": bool(audit),
        "audit_rows": _audit_rows(audit),
        "figure_path": (certificate.get("figure") or {}).get("path", "argmaxability.png"),
        "never_examples": _never_examples(audit),
        "quality_rows": quality_rows,
        "quality_splits": quality_splits,
        "training_rows": _training_rows(training_args),
        "labels_preview": ", ".join(names[:60]) + (" ..." if n > 60 else ""),
        "thresholds_note": _thresholds_note(config),
    }


def _encoder_description(config: dict[str, Any], base_model: str | None) -> str:
    """``"a bert encoder (base model ..., hidden size 768, 12 layers)"``."""
    encoder = config.get("encoder") or {}
    details = [f"base model {base_model}"] if base_model else []
    details += [
        f"hidden size {encoder.get('hidden_size', '?')}",
        f"{encoder.get('num_hidden_layers', '?')} layers",
    ]
    return f"a {encoder.get('model_type', 'transformer')} encoder ({', '.join(details)})"


def _head_title(config: dict[str, Any]) -> str:
    head_kind = config.get("head_kind", "dense")
    return {
        "dft": f"DFT output layer (k = {config.get('k')}, slack dims = {config.get('slack_dims', 0)})",
        "bottleneck": f"low-rank bottleneck head (r = {config.get('bottleneck_dim')})",
        "dense": "dense sigmoid head",
    }.get(head_kind, f"{head_kind} head")


def _check_rows(checks: dict[str, Any]) -> list[dict[str, Any]]:
    """The certificate's head checks as table rows: name, measured value, tolerance, passed."""
    check_rows = []
    if "gale_matrix" in checks:
        gale = checks["gale_matrix"]
        check_rows.append(
            {
                "name": "DFT layer reproduces G (max abs error, float64 probe)",
                "value": f"{gale['max_abs_error']:.2e}",
                "tolerance": f"{gale['tolerance']:g}",
                "passed": gale["passed"],
            }
        )
    if "head_composition" in checks:
        composition = checks["head_composition"]
        check_rows.append(
            {
                "name": "head equals [G, S] (P h + c) (max relative error)",
                "value": f"{composition['max_relative_error']:.2e}",
                "tolerance": f"{composition['tolerance']:g}",
                "passed": composition["passed"],
            }
        )
    if "projection" in checks:
        projection = checks["projection"]
        check_rows.append(
            {
                "name": f"smallest singular value of P {tuple(projection['shape'])}",
                "value": f"{projection['smallest_singular_value']:.4g}",
                "tolerance": f"{projection['tolerance']:.3g}",
                "passed": projection["full_row_rank"],
            }
        )
    return check_rows


def _plain_guarantee(config: dict[str, Any], guarantee: dict[str, Any], n: int) -> str:
    """The guarantee of a certified checkpoint in plain words (empty without ``k``)."""
    k = config.get("k")
    plain = ""
    if k is not None:
        plain = (
            f"For **every combination of up to {k} of its {n} labels**, there are inputs to the classification "
            "head for which the model outputs exactly that combination. A usual sigmoid classifier cannot promise "
            "this: with more labels than features, some small label combinations are impossible outputs."
        )
        if "encoder_features" in (guarantee.get("spaces") or []):
            plain += " Because the projection into the head has full rank, this also holds for the encoder's features."
    return plain


def _audit_rows(audit: dict[str, Any]) -> list[dict[str, Any]]:
    """The audit's gold and predicted label-set counts as table rows."""
    audit_rows = []
    for part in ("gold", "predicted"):
        figures = audit.get(part)
        if figures:
            audit_rows.append(
                {
                    "part": part,
                    "distinct": figures["distinct_sets"],
                    "argmaxable": figures["argmaxable"],
                    "epsilon": figures["epsilon_argmaxable"]
                    if figures.get("epsilon_argmaxable_share") is not None
                    else "n/a",
                    "unargmaxable": figures["unargmaxable"],
                    "undecided": figures["undecided"],
                    "larger": figures["sets_larger_than_k"] if figures.get("sets_larger_than_k") is not None else "n/a",
                }
            )
    return audit_rows


def _never_examples(audit: dict[str, Any]) -> list[str]:
    """Up to five gold label sets the model can never output, with how often each occurs."""
    return [
        f"{{{', '.join(example['labels'])}}} ({example['occurrences']} examples)"
        for example in ((audit.get("gold") or {}).get("unargmaxable_examples") or [])[:5]
    ]


def _quality_table(certificate: dict[str, Any]) -> tuple[list[dict[str, Any]], list[str]]:
    """``(rows, splits)``: one row per quality metric with its value on each split (empty where not measured)."""
    quality = quality_metrics(certificate)
    quality_splits = list(dict.fromkeys(split for split, _, _ in quality))
    by_metric: dict[str, dict[str, float]] = {}
    for split, metric, value in quality:
        by_metric.setdefault(metric, {})[split] = value
    quality_rows = [
        {"metric": metric, "values": [f"{values[split]:.4f}" if split in values else "" for split in quality_splits]}
        for metric, values in by_metric.items()
    ]
    return quality_rows, quality_splits


def _training_rows(training_args: dict[str, Any] | None) -> list[dict[str, str]]:
    return [
        {"name": name, "value": _format(training_args[name])}
        for name in TRAINING_FIELDS
        if training_args and training_args.get(name) is not None
    ]


def _labels_around_the_circle(config: dict[str, Any], n: int) -> list[str]:
    """The ``n`` label names, in circle order for a DFT head with a ``label_order`` (else in label-id order)."""
    id2label = config.get("id2label") or {}
    names = [str(id2label.get(str(i), id2label.get(i, i))) for i in range(n)]
    if config.get("head_kind", "dense") == "dft" and config.get("label_order") is not None:
        # label i sits at circle position label_order[i] (a permutation: read_card_inputs checked it): list the
        # labels as they sit around the circle
        by_position = [""] * n
        for label, position in enumerate(config["label_order"]):
            by_position[position] = names[label]
        names = by_position
    return names


def _thresholds_note(config: dict) -> str:
    """What a user must know when the config sets per-label decision thresholds (none: empty)."""
    if config.get("logit_thresholds") is None:
        return ""
    return (
        "**Decision thresholds.** This checkpoint predicts label `i` when its logit exceeds its own threshold, "
        "`config.logit_thresholds[i]` (tuned on validation data with `hf-dft tune-thresholds`). `model.predict(texts, "
        "tokenizer)`, the plugin's `multi-label-classification` pipeline and `hf-dft predict` apply them; the plain "
        "`sigmoid > 0.5` above does not."
    )
