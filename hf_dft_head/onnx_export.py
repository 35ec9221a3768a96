"""Export a DFT checkpoint to ONNX and check the graph's logits against PyTorch under onnxruntime.

``hf-dft export-onnx CHECKPOINT OUT`` (Python: :func:`export_onnx`) writes a folder that serves the model without
PyTorch::

    OUT/model.onnx         inputs  input_ids, attention_mask (and token_type_ids when the encoder has segment
                                   embeddings), int64, shape (batch, sequence), both axes dynamic
                           output  logits, float32, shape (batch, num_labels); apply a sigmoid for probabilities
    OUT/config.json        the checkpoint's configuration (label names in id2label)
    OUT/tokenizer files    the checkpoint's tokenizer, when it has one
    OUT/onnx_export.json   what was exported and the measured agreement with PyTorch

The graph comes from PyTorch's dynamo exporter (``torch.onnx.export(..., dynamo=True)``); the TorchScript exporter
cannot export the FFT path (no ``aten::complex``). The DFT head keeps its path: ``"matmul"`` becomes a MatMul with
the Gale matrix ``G`` stored as a constant of the graph, ``"fft"`` the ONNX ``DFT`` operator (inverse, one-sided;
opset 17 and later). ``dft_path`` can switch the path for the export only; the check then compares the exported
path with the checkpoint's own PyTorch path.

Before anything is written, the graph runs under onnxruntime on two batches whose sizes and lengths differ from the
traced example (so the dynamic axes are exercised), with padded rows, and its logits must match the PyTorch model's
to ``tolerance`` (max abs error); otherwise :class:`OnnxExportError` is raised and ``OUT`` is left as it was.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import inspect
import json
import logging
import math
import os
import shutil
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import AutoTokenizer

from .configuration import DFT_PATH_CHOICES, DFTConfig
from .modeling import DFTForMultiLabelClassification

try:  # the optional `onnx` extra: pip install "hf-dft-head[onnx]"
    import onnxruntime
except ImportError:
    onnxruntime = None

logger = logging.getLogger(__name__)

ONNX_NAME = "model.onnx"
REPORT_NAME = "onnx_export.json"
REPORT_FORMAT = "hf-dft-head/onnx-export"
DEFAULT_OPSET = 20  # DFT-20 (opset 20) takes the axis as an input; onnxruntime 1.31 runs opsets up to 23
MIN_OPSET = 18  # the dynamo exporter's lowest
DEFAULT_TOLERANCE = 1e-4
# Above this many bytes of weights the graph keeps them in OUT/model.onnx.data: one protobuf file stops at 2 GiB.
EXTERNAL_DATA_BYTES = 1536 * 2**20
TRACE_SHAPE = (2, 11)  # (batch, sequence) of the traced example; neither 1 (which would fix the axis)
CHECK_SHAPES = ((1, 5), (3, 19))  # the agreement check: other sizes than the traced example
REQUIRED_PACKAGES = ("onnx", "onnxscript", "onnxruntime")
# Warns once per export that torchvision's operators are skipped: irrelevant to a text model, and alarming.
EXPORTER_REGISTRY_LOGGER = "torch.onnx._internal.exporter._registration"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "spiece.model")


class OnnxExportError(RuntimeError):
    """The exporter failed, or the exported graph's logits differ from PyTorch's by more than the tolerance."""


@dataclass
class OnnxExportArguments:
    """Options of ``hf-dft export-onnx`` (the keyword arguments of :func:`export_onnx`)."""

    overwrite: bool = field(
        default=False,
        metadata={"help": "replace OUT when it holds an earlier export (other folders are never removed)"},
    )
    dft_path: str | None = field(
        default=None,
        metadata={
            "choices": list(DFT_PATH_CHOICES),
            "help": "DFT head only: export G @ x as 'fft' (ONNX DFT operator) or 'matmul' (G stored in the graph); "
            "default: the checkpoint's dft_path. The check still compares with the checkpoint's own path",
        },
    )
    opset: int = field(default=DEFAULT_OPSET, metadata={"help": f"ONNX opset version (at least {MIN_OPSET})"})
    tolerance: float = field(
        default=DEFAULT_TOLERANCE,
        metadata={"help": "largest max-abs logit difference between onnxruntime and PyTorch that is accepted"},
    )


class LogitsOnly(nn.Module):
    """The classifier with named tensor inputs and one output: ``(B, T)`` token tensors -> ``(B, n)`` logits."""

    def __init__(self, model: DFTForMultiLabelClassification):
        super().__init__()
        self.model = model

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).logits


def graph_input_names(model: DFTForMultiLabelClassification) -> list[str]:
    """``input_ids``, ``attention_mask`` and, if the encoder has more than one segment embedding, ``token_type_ids``.

    RoBERTa accepts ``token_type_ids`` but has one segment (its tokenizer emits none); DistilBERT and ModernBERT
    take none. Only an input that can change the logits becomes an input of the graph.
    """
    names = ["input_ids", "attention_mask"]
    accepts = "token_type_ids" in inspect.signature(model.encoder.forward).parameters
    if accepts and int(getattr(model.config.encoder, "type_vocab_size", 0) or 0) > 1:
        names.append("token_type_ids")
    return names


def sample_inputs(
    model: DFTForMultiLabelClassification, names: list[str], batch: int, length: int, seed: int
) -> dict[str, torch.Tensor]:
    """Random int64 token tensors ``(batch, length)``: ids, a mask whose later rows are padded, two segments."""
    generator = torch.Generator().manual_seed(seed)
    vocab = int(model.config.encoder.vocab_size)
    inputs = {"input_ids": torch.randint(0, vocab, (batch, length), generator=generator)}
    mask = torch.ones(batch, length, dtype=torch.long)
    for row in range(1, batch):  # row r keeps its first length - r * length // (batch + 1) tokens
        mask[row, length - row * length // (batch + 1) :] = 0
    inputs["attention_mask"] = mask
    if "token_type_ids" in names:
        segments = torch.zeros(batch, length, dtype=torch.long)
        segments[:, length // 2 :] = 1
        inputs["token_type_ids"] = segments
    return inputs


@contextlib.contextmanager
def _quiet_logger(name: str) -> Iterator[None]:
    """Raise logger ``name`` to ERROR for the duration (restored afterwards)."""
    log = logging.getLogger(name)
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def export_graph(model: DFTForMultiLabelClassification, path: Path, names: list[str], opset: int) -> None:
    """Write the ONNX graph of ``model`` (float32, eval mode) to ``path`` with dynamic batch and sequence axes."""
    example = sample_inputs(model, names, *TRACE_SHAPE, seed=0)
    weight_bytes = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
    with torch.no_grad():  # fills the matmul path's lazy G cache, so the trace reads G instead of creating it
        model(**example)
    try:
        with warnings.catch_warnings(), _quiet_logger(EXPORTER_REGISTRY_LOGGER):
            # All inputs share one batch and one sequence axis; the exporter warns that it names each shared axis once.
            warnings.filterwarnings("ignore", message=r"# The axis name: .* will not be used")
            warnings.filterwarnings("ignore", category=FutureWarning)  # torch's internal deprecations, not ours
            torch.onnx.export(
                LogitsOnly(model).eval(),
                tuple(example[name] for name in names),
                str(path),
                dynamo=True,
                input_names=names,
                output_names=["logits"],
                dynamic_shapes={name: {0: "batch", 1: "sequence"} for name in names},
                opset_version=opset,
                external_data=weight_bytes > EXTERNAL_DATA_BYTES,
                verbose=False,
            )
    except Exception as error:  # the exporter raises many types; all mean "this model did not export"
        cause = error
        while cause.__cause__ is not None:  # the innermost error names the operator that failed
            cause = cause.__cause__
        message = (str(cause).strip().splitlines() or [""])[0]
        raise OnnxExportError(
            f"torch.onnx could not export {type(model.encoder).__name__} with a {model.config.head_kind} head: "
            f"{type(cause).__name__}: {message}"
        ) from error


def onnx_logits(path: Path, inputs: dict[str, torch.Tensor]) -> np.ndarray:
    """Run the graph at ``path`` under onnxruntime (CPU): token tensors ``(B, T)`` -> logits ``(B, n)``."""
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["logits"], {name: tensor.numpy() for name, tensor in inputs.items()})[0]


def check_against_pytorch(
    reference: DFTForMultiLabelClassification, path: Path, names: list[str]
) -> list[dict[str, Any]]:
    """Max abs logit difference between the graph (onnxruntime) and ``reference`` (PyTorch) on ``CHECK_SHAPES``."""
    checks = []
    for seed, (batch, length) in enumerate(CHECK_SHAPES, start=1):
        inputs = sample_inputs(reference, names, batch, length, seed=seed)
        with torch.no_grad():
            expected = reference(**inputs).logits.numpy()
        actual = onnx_logits(path, inputs)
        if actual.shape != expected.shape:
            raise OnnxExportError(f"the graph returned logits of shape {actual.shape}, PyTorch {expected.shape}")
        checks.append({"batch": batch, "sequence": length, "max_abs_error": float(np.max(np.abs(actual - expected)))})
    return checks


def _package_versions() -> dict[str, str]:
    versions = {}
    for name in ("hf-dft-head", "torch", "transformers", *REQUIRED_PACKAGES):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _check_arguments(
    checkpoint: Path, output_dir: Path, *, overwrite: bool, dft_path: str | None, opset: int, tolerance: float
) -> None:
    """Raise ``ValueError`` naming the problem and the fix."""
    missing = [name for name in REQUIRED_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        raise ValueError(
            f"the ONNX export needs {', '.join(missing)}: install them with pip install 'hf-dft-head[onnx]'."
        )
    if not checkpoint.is_dir():
        raise ValueError(
            f"checkpoint folder {checkpoint} does not exist. Give a local folder written by save_pretrained (for a "
            "Hub repo, download it first: hf download REPO_ID --local-dir FOLDER)."
        )
    config_path = checkpoint / "config.json"
    if not config_path.is_file():
        raise ValueError(f"{checkpoint} has no config.json: it is not a checkpoint folder written by save_pretrained.")
    config = json.loads(config_path.read_text())
    if config.get("model_type") != DFTConfig.model_type:
        raise ValueError(
            f"{checkpoint} is a {config.get('model_type')!r} model, not an hf_dft_head checkpoint "
            f"(model_type {DFTConfig.model_type!r}); this command exports DFT, bottleneck and dense-head classifiers."
        )
    if dft_path is not None:
        if dft_path not in DFT_PATH_CHOICES:
            raise ValueError(f"dft_path must be one of {DFT_PATH_CHOICES}, got {dft_path!r}.")
        if config.get("head_kind", "dft") != "dft":
            raise ValueError(f"dft_path applies to DFT heads only; {checkpoint} has a {config['head_kind']!r} head.")
    if opset < MIN_OPSET:
        raise ValueError(f"opset must be at least {MIN_OPSET} (the dynamo exporter's lowest), got {opset}.")
    if not 0 <= tolerance < math.inf:
        raise ValueError(f"tolerance must be a finite number >= 0 (a max abs logit difference), got {tolerance}.")

    source, target = checkpoint.resolve(), output_dir.resolve()
    if target == source or target in source.parents:
        raise ValueError(f"output folder {output_dir} holds the checkpoint {checkpoint}: choose another folder.")
    if target.exists():
        if not target.is_dir():
            raise ValueError(f"output {output_dir} is a file, not a folder: choose another path.")
        if any(target.iterdir()):
            if not overwrite:
                raise ValueError(
                    f"output folder {output_dir} already exists and is not empty: pass overwrite=True "
                    "(--overwrite) to replace an earlier export, or choose another folder."
                )
            if not (target / REPORT_NAME).is_file():
                raise ValueError(
                    f"output folder {output_dir} is not empty and holds no {REPORT_NAME}, so it is not an earlier "
                    "export: it is not replaced even with overwrite. Choose a new or empty folder."
                )


def export_onnx(
    checkpoint: str | os.PathLike,
    output_dir: str | os.PathLike,
    *,
    overwrite: bool = False,
    dft_path: str | None = None,
    opset: int = DEFAULT_OPSET,
    tolerance: float = DEFAULT_TOLERANCE,
) -> dict[str, Any]:
    """Export the classifier in ``checkpoint`` to ``output_dir/model.onnx`` with its tokenizer and config, checked.

    Args:
        checkpoint: a local checkpoint folder of this package (``save_pretrained`` output; any head kind).
        output_dir: the folder to write; it must not exist or be empty, or hold an earlier export and
            ``overwrite`` be set.
        overwrite: replace an earlier export in ``output_dir``.
        dft_path: ``"fft"`` or ``"matmul"`` (or ``"auto"``) to export the DFT head's ``G @ x`` that way; ``None``
            keeps the checkpoint's ``dft_path``.
        opset: ONNX opset version (at least 18).
        tolerance: the largest accepted max abs difference between onnxruntime's and PyTorch's logits.

    Returns:
        The report also written to ``output_dir/onnx_export.json``: inputs, outputs, opset, DFT paths, the max abs
        error of each check (``(batch, sequence)`` shapes ``CHECK_SHAPES``), whether a tokenizer was exported,
        package versions.

    Raises:
        ValueError: bad arguments (missing checkpoint, not an hf_dft_head checkpoint, ``output_dir`` not empty
            without ``overwrite``, ONNX packages not installed, ...); nothing is written.
        OnnxExportError: the exporter failed or the logits differ by more than ``tolerance``; nothing is written.
    """
    checkpoint, output_dir = Path(checkpoint), Path(output_dir).resolve()  # resolved: OUT may be "."
    _check_arguments(checkpoint, output_dir, overwrite=overwrite, dft_path=dft_path, opset=opset, tolerance=tolerance)
    tokenizer = _load_tokenizer(checkpoint)
    # The package's class, not the checkpoint's remote code: nothing from the checkpoint is executed.
    reference = DFTForMultiLabelClassification.from_pretrained(checkpoint).float().eval()
    exported, paths = _model_to_export(reference, dft_path)
    names = graph_input_names(reference)

    output_dir.parent.mkdir(parents=True, exist_ok=True)
    # Written next to OUT and moved in at the end, so a failure leaves OUT (and an earlier export in it) untouched.
    scratch = output_dir.parent / f".{output_dir.name}.partial-{os.getpid()}-{time.time_ns()}"
    scratch.mkdir()
    try:
        export_graph(exported, scratch / ONNX_NAME, names, opset)
        checks = check_against_pytorch(reference, scratch / ONNX_NAME, names)
        worst = max(check["max_abs_error"] for check in checks)
        if not worst <= tolerance:  # also catches NaN
            raise OnnxExportError(
                f"onnxruntime's logits differ from PyTorch's by up to {worst:.3g} (> tolerance {tolerance:g}) on "
                f"{checkpoint}; nothing was written."
            )
        reference.config.save_pretrained(scratch)
        if tokenizer is not None:
            tokenizer.save_pretrained(scratch)
        report = {
            "format": REPORT_FORMAT,
            "checkpoint": str(checkpoint),
            "onnx": ONNX_NAME,
            "opset": opset,
            "exporter": "torch.onnx.export(dynamo=True)",
            "inputs": {name: ["batch", "sequence"] for name in names},
            "outputs": {"logits": ["batch", reference.config.num_labels]},
            "head_kind": reference.config.head_kind,
            "dft_path": paths,
            "tokenizer": tokenizer is not None,
            "checks": checks,
            "max_abs_error": worst,
            "tolerance": tolerance,
            "versions": _package_versions(),
        }
        (scratch / REPORT_NAME).write_text(json.dumps(report, indent=2) + "\n")
        _move_into(scratch, output_dir)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return report


def _load_tokenizer(checkpoint: Path):
    """The checkpoint's tokenizer, ``None`` (with a warning) when it has no tokenizer files."""
    if not any((checkpoint / name).is_file() for name in TOKENIZER_FILES):
        logger.warning("%s has no tokenizer files: the export has the graph but no tokenizer.", checkpoint)
        return None
    try:
        return AutoTokenizer.from_pretrained(checkpoint)
    except (OSError, ValueError) as error:
        raise ValueError(f"the tokenizer files in {checkpoint} do not load: {error}") from error


def _model_to_export(reference, dft_path: str | None) -> tuple[Any, dict[str, str] | None]:
    """``(model, paths)``: ``reference`` itself, or a copy whose DFT layer computes ``G @ x`` by ``dft_path``;
    ``paths`` the DFT paths of the checkpoint and of the export (``None`` for another head kind)."""
    exported, paths = reference, None
    if reference.config.head_kind == "dft":
        layer = reference.head.dft
        paths = {"checkpoint": layer.path, "checkpoint_resolved": layer.resolved_path}
        if dft_path is not None and dft_path != layer.path:
            exported = copy.deepcopy(reference)
            exported.head.dft.path = dft_path
        paths.update(exported=exported.head.dft.path, exported_resolved=exported.head.dft.resolved_path)
    return exported, paths


def _move_into(scratch: Path, output_dir: Path) -> None:
    """Move the finished export from ``scratch`` to ``output_dir``: renamed whole when ``output_dir`` does not
    exist, else (empty, or an earlier export and overwrite: checked before any work) its contents replaced."""
    if output_dir.exists():
        for entry in output_dir.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        for entry in scratch.iterdir():
            entry.rename(output_dir / entry.name)
    else:
        scratch.rename(output_dir)


def format_export_summary(report: dict[str, Any], output_dir: str | os.PathLike) -> str:
    """A few lines for the console: where the graph is, its inputs, and the agreement with PyTorch."""
    checks = ", ".join(f"{c['batch']}x{c['sequence']}: {c['max_abs_error']:.2g}" for c in report["checks"])
    lines = [
        f"Wrote {Path(output_dir) / report['onnx']} (opset {report['opset']}): inputs {', '.join(report['inputs'])} "
        "(batch, sequence) -> logits (batch, num_labels)",
        f"max |onnxruntime - PyTorch| logits: {checks} (tolerance {report['tolerance']:g})",
    ]
    if report["dft_path"] is not None:
        lines.append(
            f"DFT head: exported path {report['dft_path']['exported_resolved']!r}, checkpoint's "
            f"{report['dft_path']['checkpoint_resolved']!r}"
        )
    if not report["tokenizer"]:
        lines.append("The checkpoint has no tokenizer: none was exported.")
    return "\n".join(lines)


__all__ = [
    "OnnxExportArguments",
    "OnnxExportError",
    "export_onnx",
    "format_export_summary",
    "graph_input_names",
]
