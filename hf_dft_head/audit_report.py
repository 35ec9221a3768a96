"""The audit report's human side: a short text summary and a PNG of the argmaxable share by label-set size.

Both read the JSON-ready report of :func:`hf_dft_head.audit.audit_checkpoint` (a dict) and nothing else, so a
certificate's verifier re-draws the figure from a recomputed report and compares the bytes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import matplotlib.ticker
import numpy as np
from matplotlib.figure import Figure

from .output_checks import atomic_write

AUDIT_REPORT_NAME = "argmaxability_audit.json"
AUDIT_FIGURE_NAME = "argmaxability.png"


def format_summary(report: dict[str, Any]) -> str:
    """A short plain-text summary of an audit report, naming the labels of sets the model can never output."""
    head = report["model"]["head"]
    lines = [
        f"Model: {report['model']['path']} ({report['model']['architecture']}, head {head['kind']}, "
        f"n={head['num_labels']} labels, decided in: {head['space']})",
        f"Data: {report['dataset']['dataset']} split={report['dataset']['split']} "
        f"({report['dataset']['examples']} examples); box |x|_inf <= {report['verifier']['box']:g}, "
        f"epsilon radius {report['verifier']['epsilon_radius']:.3g}",
    ]
    radius = report["verifier"].get("radius") or {}
    if radius.get("computed_for") == "sample":
        lines.append(
            f"Radii of the sets the DFT rule decides: a sample of {radius['sample_size']} of "
            f"{radius['rule_decided_argmaxable_sets']} (seed {radius['seed']}; --radius-sample sets the size)"
        )
    elif radius.get("computed_for") == "none" and radius.get("rule_decided_argmaxable_sets"):
        lines.append("Radii of the sets the DFT rule decides: not computed (--radius-sample N computes N)")
    for part in ("gold", "predicted"):
        figures = report.get(part)
        if not figures:
            continue
        lines.append(
            f"{part.capitalize()} label sets: {figures['distinct_sets']} distinct; "
            f"{figures['argmaxable']} argmaxable, {figures['unargmaxable']} never outputtable, "
            f"{figures['undecided']} undecided"
            + (
                f" ({figures['examples_with_unargmaxable_set']} of {figures['examples']} examples carry a set the "
                "model can never output)"
                if part == "gold"
                else ""
            )
        )
        if figures["epsilon_argmaxable_share"] is not None:
            lines.append(f"  epsilon-argmaxable: {figures['epsilon_argmaxable']} of {figures['distinct_sets']}")
        elif figures["radius_computed"]:
            lines.append(
                f"  epsilon-argmaxable: {figures['epsilon_argmaxable']} of the {figures['radius_computed']} argmaxable "
                "sets whose radius was computed"
            )
        if figures.get("share_larger_than_k") is not None:
            lines.append(f"  sets with more than k={head['dft_k']} labels: {figures['sets_larger_than_k']}")
        for example in figures["unargmaxable_examples"][:5]:
            lines.append(f"  never output: {{{', '.join(example['labels'])}}} ({example['occurrences']} examples)")
        for example in figures["undecided_examples"][:3]:
            lines.append(f"  undecided: {{{', '.join(example['labels'])}}}: {example['reason']}")
    lost = report.get("thresholds")
    if lost:
        lines.append(
            f"Logit thresholds ({lost['kind']}): {lost['lost_gold_sets']} distinct gold sets the raw head can output "
            f"are never output with them ({lost['examples_with_lost_set']} examples)"
        )
        for example in lost["lost_examples"][:5]:
            lines.append(f"  lost: {{{', '.join(example['labels'])}}} ({example['occurrences']} examples)")
    return "\n".join(lines)


def plot_series(report: dict[str, Any]) -> dict[str, list]:
    """The numbers the figure shows: argmaxable share by label-set size, for gold (and predicted) sets."""
    series = {}
    for part in ("gold", "predicted"):
        figures = report.get(part)
        if figures:
            series[part] = [[row["size"], row["argmaxable_share"], row["sets"]] for row in figures["by_size"]]
    return series


def write_plot(report: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write a PNG bar chart of the argmaxable share by label-set size (metadata-free, so deterministic bytes)."""
    series = plot_series(report)
    # A bare Figure (Agg canvas), not pyplot: no global backend or figure registry is touched.
    figure = Figure(figsize=(7, 3.6), dpi=100)
    axis = figure.subplots()
    width = 0.4 if len(series) > 1 else 0.8
    for offset, (part, rows) in enumerate(series.items()):
        sizes = np.array([row[0] for row in rows], dtype=float)
        shares = [row[1] for row in rows]
        shift = (offset - (len(series) - 1) / 2) * width
        bars = axis.bar(sizes + shift, shares, width=width, label=f"{part} sets")
        if part == "gold":  # how many distinct sets each bar stands for (a 0 share is then visibly not "no data")
            axis.bar_label(bars, labels=[str(row[2]) for row in rows], fontsize=6, padding=1)
    head = report["model"]["head"]
    if head.get("dft_k") is not None:
        axis.axvline(head["dft_k"] + 0.5, color="grey", linestyle="--", linewidth=1, label=f"k = {head['dft_k']}")
    axis.set_xlabel("label-set size")
    axis.set_ylabel("argmaxable share of distinct sets")
    axis.text(0.01, 0.98, "numbers: distinct gold sets of that size", transform=axis.transAxes, fontsize=6, va="top")
    axis.set_ylim(0, 1.12)
    axis.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    axis.set_title(f"Argmaxability on {Path(str(report['dataset']['dataset'])).name} / {report['dataset']['split']}")
    axis.legend(loc="upper right", fontsize=8)
    figure.tight_layout()
    path = Path(path)
    # Software/date metadata off: the same numbers give the same bytes, so a certificate can hash the file.
    atomic_write(path, lambda handle: figure.savefig(handle, format="png", metadata={"Software": None}))
    return path
