"""The package's modules import only downward: no circle, no import from a lower floor to a higher one.

The import graph is read from the source with ``ast`` (every ``import`` / ``from ... import``, at module level or
inside a function: a function-level import does not make an upward import acceptable) and checked against
``FLOORS`` below, lowest first. A module may import modules of its own floor or of lower floors, and the modules of
one floor must not import each other in a circle. A new module must be given a floor here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = "hf_dft_head"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE

#: Floors, lowest first (module names relative to the package; "" is the package's ``__init__``).
FLOORS: list[tuple[str, set[str]]] = [
    (
        "ground: the maths and plain utilities (no transformers)",
        {
            "version",
            "gale",
            "output_checks",
            "argmax.label_sets",
            "argmax.exact",
            "argmax.lp",
            "argmax.rule",
            "argmax.verify",
            "argmax.summary",
            "argmax.radii",
            "argmax",
            "metrics.quality",
            "metrics",
            "label_order",
            "threshold_tuning",
        },
    ),
    (
        "model: the layer, its config and model, prediction (copied into remote-code checkpoints in part)",
        {"layers", "configuration", "prediction", "modeling", "convert", "feature_batches", "console"},
    ),
    (
        "checkpoint: loading a checkpoint, its bound files, its sigmoid head, its code; data; launched processes",
        {
            "checkpoints",
            "sigmoid_head",
            "pipeline",
            "remote_code",
            "sharding",
            "data",
            *(f"data.{job}" for job in ("formats", "sources", "loading", "statistics", "collate", "bundled", "spec")),
        },
    ),
    (
        "training parts: options and checks, saved state, frozen encoder features, the run's data",
        {"training_state", "training_args", "encoder_features", "training_data"},
    ),
    (
        "metrics loaded by evaluate.load (absolute imports of the installed package)",
        {"metrics.argmaxability.argmaxability", "metrics.multilabel_quality.multilabel_quality"},
    ),
    (
        "audit: verdicts of a checkpoint on a data split, and its report",
        {"audit", "audit_report", "evaluation", "thresholds"},
    ),
    (
        "certificate: its checked sections (head, guarantee, code, probe); build, verify, diff; its text",
        {"certificate_checks", "certificate", "certificate_report"},
    ),
    ("publishing: the model card (dicts in, text out) and the Hub", {"model_card", "hub"}),
    ("commands: training and the command line", {"training", "onnx_export", "predict", "cli", ""}),
]

#: Scripts run in a process of their own, never imported: ``remote_probe`` imports the package only to prove that
#: it cannot (its interpreter blocks ``hf_dft_head``).
SCRIPTS = {"remote_probe"}


def module_name(path: Path) -> str:
    relative = path.relative_to(ROOT).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def package_modules() -> dict[str, Path]:
    return {name: path for path in sorted(ROOT.rglob("*.py")) if (name := module_name(path)) not in SCRIPTS}


def imported_modules(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules that ``name`` imports anywhere in its file (relative and absolute imports)."""
    is_package = path.name == "__init__.py"
    here = name.split(".") if name else []
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
            names: list[str] = []
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here if is_package else here[:-1]
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                source = ".".join([PACKAGE, *base] + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            targets = [source]
            names = [alias.name for alias in node.names]
        else:
            continue
        for target in targets:
            if target != PACKAGE and not target.startswith(PACKAGE + "."):
                continue
            inside = target[len(PACKAGE) + 1 :]
            submodules = [f"{inside}.{n}".strip(".") for n in names if f"{inside}.{n}".strip(".") in modules]
            found.update(submodules or [inside])
    found.discard(name)
    return found


def floor_of() -> dict[str, int]:
    floors = {}
    for index, (_, members) in enumerate(FLOORS):
        for member in members:
            assert member not in floors, f"{member!r} is on two floors"
            floors[member] = index
    return floors


def test_every_module_has_a_floor() -> None:
    floors = floor_of()
    missing = sorted(set(package_modules()) - set(floors))
    assert not missing, f"give these modules a floor in FLOORS: {missing}"


def test_no_module_imports_a_higher_floor() -> None:
    modules, floors = package_modules(), floor_of()
    upward = [
        f"{name or PACKAGE} ({FLOORS[floors[name]][0].split(':')[0]}) imports {target} "
        f"({FLOORS[floors[target]][0].split(':')[0]})"
        for name, path in modules.items()
        for target in sorted(imported_modules(name, path, modules))
        if target in floors and name in floors and floors[target] > floors[name]
    ]
    assert not upward, "\n".join(upward)


def test_the_import_graph_has_no_circle() -> None:
    modules = package_modules()
    graph = {name: imported_modules(name, path, modules) & set(modules) for name, path in modules.items()}
    # A package's __init__ re-exporting its submodules is not a circle of theirs: a submodule importing its own
    # package's __init__ (``from . import x`` of a module resolves to the module itself above) would be one.
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                cycle = stack[stack.index(target) :] + [target]
                pytest.fail("import circle: " + " -> ".join(name or PACKAGE for name in cycle))
            if target not in state:
                visit(target)
        stack.pop()
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name)


def test_the_reader_sees_relative_absolute_and_function_level_imports(tmp_path) -> None:
    """The graph reader itself, on a made-up file: each form of import is found and resolved."""
    source = tmp_path / "probe.py"
    source.write_text(
        "from . import audit\nfrom .argmax import Verdict\nimport hf_dft_head.gale\nimport numpy\n"
        "def f():\n    from hf_dft_head.sigmoid_head import find_sigmoid_head\n"
    )
    modules = package_modules()
    assert imported_modules("probe", source, modules) == {"audit", "argmax", "gale", "sigmoid_head"}
    assert imported_modules("argmax.summary", ROOT / "argmax" / "summary.py", modules) == {"argmax.verify"}
