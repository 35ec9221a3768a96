"""Is the code a user will run the code that was checked?

A checkpoint ships its own ``*.py`` files; ``from_pretrained(..., trust_remote_code=True)`` runs *those*, not the
installed package. A certificate computed with the package therefore says nothing about the checkpoint unless

1. every shipped code file is byte-identical to the verifying package's file of the same name
   (:func:`check_code_files`), ``config.json``'s ``auto_map`` names only the package's own classes and the
   tokenizer ships no code (:func:`check_auto_maps`); and
2. the model, loaded through the checkpoint's own code in a separate interpreter that cannot import the package
   (``remote_probe.py``), computes what the package computes independently in float64 numpy
   (:func:`probe_remote_code`): the head on ``m + 8`` random feature vectors (``m`` = width of the head's input
   space, so the probes pin the whole effective matrix), in float64 and in the checkpoint's dtype, and the whole
   model on fixed probe texts.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .checkpoints import (
    CARD_NAME,
    CERTIFICATE_NAME,
    PACKAGE_DIR,
    expected_auto_map,
    remote_code_files,
    sha256_file,
)
from .version import __version__

#: Relative error of the checkpoint's float64 head against the package's numpy reference.
FLOAT64_TOLERANCE = 1e-9
#: Relative error of the head in the checkpoint's own dtype against the float64 reference.
DTYPE_TOLERANCE = {"float32": 1e-4, "bfloat16": 5e-2, "float16": 1e-2, "float64": 1e-9}
#: Relative difference of whole-model logits on the probe texts, checkpoint code vs package code.
TEXT_TOLERANCE = 1e-5
#: Seconds the probe interpreter may take (it imports torch and transformers and loads the model).
PROBE_TIMEOUT = 900
PROBE_SCRIPT = PACKAGE_DIR / "remote_probe.py"
#: Probe texts for whole-model checks: short, varied, and independent of any data set.
PROBE_TEXTS = (
    "We need water and food for the children in the shelter.",
    "The bridge collapsed after the flood and the road is closed.",
    "Is there any medical help near the school?",
    "power outage since the storm, no fuel left",
    "Thanks for the update!",
    "Fire spreading towards the village; people are evacuating now.",
    "Où est le centre de distribution de l'aide ?",
    "(╯°□°)╯︵ ┻━┻",
)


def relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    """``max |actual - expected| / max |expected|`` (``inf`` on a shape mismatch or a non-finite value)."""
    if actual.shape != expected.shape or not np.all(np.isfinite(actual)):
        return float("inf")
    return float(np.max(np.abs(actual - expected)) / max(float(np.max(np.abs(expected))), 1e-300))


def check_code_files(folder: str | os.PathLike, files: list[str]) -> tuple[dict[str, Any], list[str]]:
    """Compare the checkpoint's code files with the package's; returns ``(summary, problems)``.

    ``files`` are the checkpoint's bound files. Every ``*.py`` among them must be one of the package's remote-code
    modules (:func:`hf_dft_head.checkpoints.remote_code_files`), at the top level, byte-identical to the installed
    file; every one of those modules must be present (a DFT checkpoint without them cannot load without the plugin).
    """
    folder = Path(folder)
    expected = remote_code_files()
    shipped = sorted(name for name in files if name.endswith(".py"))
    problems = []
    for name in shipped:
        if name not in expected:
            problems.append(
                f"code file {name}: not a module of hf-dft-head {__version__}'s remote code ({', '.join(expected)}); "
                "a checkpoint may ship only those"
            )
        elif (folder / name).read_bytes() != (PACKAGE_DIR / name).read_bytes():
            problems.append(
                f"code file {name}: differs from the {name} of the verifying package hf-dft-head {__version__}; "
                "the checkpoint would run other code than the code that was checked. Re-save it with this version "
                "(load it with the plugin, save_pretrained, certify again), or verify it with the version that saved "
                "it (pip install hf-dft-head==<the version in the certificate>)"
            )
    for name in expected:
        if name not in shipped:
            problems.append(f"code file {name}: missing (remote-code loading needs {', '.join(expected)})")
    summary = {
        "package_version": __version__,
        "files": shipped,
        "identical_to_package": not problems,
    }
    return summary, problems


def check_auto_maps(
    folder: str | os.PathLike, config: dict[str, Any] | None = None
) -> tuple[dict[str, Any], list[str]]:
    """``config.json``'s ``auto_map`` must be the package's own, with no ``custom_pipelines``; tokenizer files must
    ship no ``auto_map``. ``config``: ``config.json`` already parsed (at 1M labels parsing it takes seconds).

    An ``auto_map`` entry can name a class in *another* repo (``"user/repo--module.Class"``), or a module that was
    not checked; a tokenizer ``auto_map`` makes ``AutoTokenizer`` run code too, and ``custom_pipelines`` the
    pipeline factory.
    """
    folder = Path(folder)
    problems = []
    if config is None:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    auto_map = config.get("auto_map") or {}
    expected = expected_auto_map()
    if auto_map != expected:
        problems.append(
            f"config.json: auto_map is {json.dumps(auto_map, sort_keys=True)}, expected exactly "
            f"{json.dumps(expected, sort_keys=True)} (an auto_map entry decides which code from_pretrained runs)"
        )
    if config.get("custom_pipelines"):
        problems.append(
            "config.json: has custom_pipelines (they make pipeline(..., trust_remote_code=True) run code that is not "
            "checked)"
        )
    tokenizer_code = []
    for name in ("tokenizer_config.json", "processor_config.json", "preprocessor_config.json"):
        path = folder / name
        if path.is_file():
            try:
                entry = json.loads(path.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError):
                problems.append(f"{name}: not valid JSON")
                continue
            if isinstance(entry, dict) and entry.get("auto_map"):
                tokenizer_code.append(name)
                problems.append(f"{name}: has an auto_map (it would make AutoTokenizer run code that is not checked)")
    return {"auto_map": auto_map, "tokenizer_auto_map": tokenizer_code}, problems


def probe_features(width: int, encoder_width: int, seed: int = 0) -> np.ndarray:
    """``(width + 8, d)`` float64 N(0, 1) feature vectors: more probes than the head's input width."""
    return np.random.default_rng(seed).standard_normal((width + 8, encoder_width))


def reference_head_logits(model, features: np.ndarray) -> np.ndarray:
    """The package's float64 numpy computation ``W (P h + c) + b`` for features ``(N, d)`` -> ``(N, n)``.

    ``W, b`` come from ``effective_head()`` (for a DFT head ``[G | S]`` with ``G`` recomputed by ``gale_matrix``),
    ``P, c`` from ``head_projection()`` (identity for the dense head): no torch layer is involved.
    """
    weight, bias = model.effective_head()
    projection = model.head_projection()
    inputs = features if projection is None else features @ projection[0].T + projection[1]
    return inputs @ np.asarray(weight).T + np.asarray(bias)


def package_text_logits(model, tokenizer, max_length: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """``(input_ids (T, L), logits (T, n) float64)`` of :data:`PROBE_TEXTS` through the package-loaded model."""
    batch = tokenizer(list(PROBE_TEXTS), padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    with torch.no_grad():
        logits = model(**batch).logits.double().cpu().numpy()
    return batch["input_ids"].numpy(), logits


#: Probe results of this process by the bytes they depend on (see :func:`probe_remote_code`).
_PROBE_RESULTS: dict[str, dict[str, Any]] = {}


def _probe_key(folder: Path, max_length: int) -> str:
    """A digest of every file the probe can read (the folder but its certificate and card) and its settings."""
    digest = hashlib.sha256(f"{max_length}|{sys.executable}".encode())
    unread = {folder / CERTIFICATE_NAME, folder / CARD_NAME}
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p not in unread):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0" + sha256_file(path).encode())
    return digest.hexdigest()


def probe_remote_code(folder: str | os.PathLike, model, tokenizer, *, max_length: int = 128) -> dict[str, Any]:
    """Load ``folder`` through its own code in a fresh interpreter and compare what it computes (module docstring).

    ``model``/``tokenizer`` are the same checkpoint loaded with the package. Returns the JSON-ready
    ``checks.remote_code`` section; ``passed`` is False (with ``error``) when the probe could not run. The result
    depends only on the folder's bytes, so it is remembered for this process under their digest (a second
    verification of the same files, e.g. by ``push`` after ``verify``, does not start another interpreter).
    """
    return RemoteProbe(folder, model, tokenizer, max_length=max_length).result()


class RemoteProbe:
    """:func:`probe_remote_code` started now, its section read later: the probe interpreter runs while this process
    does other work (``certify`` audits meanwhile, on the other core), and ``result()`` waits for it.

    Use as a context manager, or call ``result()`` (or ``cancel()``) exactly once: the probe's scratch folder and
    process live until then.
    """

    def __init__(self, folder: str | os.PathLike, model, tokenizer, *, max_length: int = 128) -> None:
        self.folder, self.model, self.tokenizer, self.max_length = Path(folder), model, tokenizer, max_length
        self.key = _probe_key(self.folder, max_length)
        self._process: subprocess.Popen | None = None
        self._scratch: tempfile.TemporaryDirectory | None = None
        projection = model.head_projection()
        width = model.effective_head()[0].shape[1]
        self._features = probe_features(width, projection[0].shape[1] if projection is not None else width)
        self._section: dict[str, Any] = {
            "probe": f"{self._features.shape[0]} seeded N(0, 1) feature vectors and {len(PROBE_TEXTS)} probe texts, "
            "loaded with trust_remote_code=True in a process that cannot import hf_dft_head",
            "float64_tolerance": FLOAT64_TOLERANCE,
            "text_tolerance": TEXT_TOLERANCE,
        }
        if self.key not in _PROBE_RESULTS:
            self._start()

    def __enter__(self) -> RemoteProbe:
        return self

    def __exit__(self, *exc_info) -> None:
        self.cancel()

    def _start(self) -> None:
        self._scratch = tempfile.TemporaryDirectory(prefix="hf_dft_probe_")
        scratch = Path(self._scratch.name)
        script = Path(shutil.copy(PROBE_SCRIPT, scratch / "probe.py"))
        np.save(scratch / "features.npy", self._features)
        request = {
            "checkpoint": str(self.folder.resolve()),
            "features": str(scratch / "features.npy"),
            "texts": list(PROBE_TEXTS),
            "max_length": self.max_length,
            "output": str(scratch / "out.npz"),
        }
        (scratch / "request.json").write_text(json.dumps(request), encoding="utf-8")
        environment = {
            **os.environ,
            "HF_MODULES_CACHE": str(scratch / "modules"),  # a fresh copy of the checkpoint's code, never a stale one
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_VERBOSITY": "error",
            "PYTHONNOUSERSITE": "1",
        }
        environment.pop("PYTHONPATH", None)
        # Output to a file, not a pipe: nobody reads a pipe while the probe runs, and a full one would stall it.
        with open(scratch / "probe.log", "w", encoding="utf-8") as log:
            self._process = subprocess.Popen(
                [sys.executable, str(script), str(scratch / "request.json")],
                cwd=scratch,
                env=environment,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def cancel(self) -> None:
        """Stop the probe if it still runs and remove its scratch folder (no section)."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        self._process = None
        if self._scratch is not None:
            self._scratch.cleanup()
            self._scratch = None

    def result(self) -> dict[str, Any]:
        """The ``checks.remote_code`` section (waits for the probe interpreter, at most ``PROBE_TIMEOUT`` s)."""
        if self.key not in _PROBE_RESULTS:
            try:
                _PROBE_RESULTS[self.key] = self._finish()
            finally:
                self.cancel()
        return dict(_PROBE_RESULTS[self.key])

    def _finish(self) -> dict[str, Any]:
        section, process = dict(self._section), self._process
        if process is None:
            raise RuntimeError("RemoteProbe.result() after cancel(): start a new probe.")
        # The package's side first, while the probe may still run (seconds at 1M labels).
        model, tokenizer = self.model, self.tokenizer
        expected = reference_head_logits(model, self._features)
        package_ids, package_logits = (
            package_text_logits(model, tokenizer, self.max_length) if tokenizer else (None, None)
        )
        try:
            process.wait(timeout=PROBE_TIMEOUT)
        except subprocess.TimeoutExpired:
            return {**section, "passed": False, "error": f"the probe took more than {PROBE_TIMEOUT} s"}
        scratch = Path(self._scratch.name)
        if process.returncode != 0:
            output = (scratch / "probe.log").read_text(encoding="utf-8", errors="replace")
            last = (output.strip().splitlines() or ["no output"])[-1]
            return {**section, "passed": False, "error": f"loading with the checkpoint's own code failed: {last}"}
        outputs = np.load(scratch / "out.npz")
        summary = json.loads((scratch / "out.npz.json").read_text(encoding="utf-8"))
        logits64, dtype_logits = outputs["logits64"], outputs["dtype_logits"]
        remote_ids, remote_text_logits = outputs["input_ids"], outputs["text_logits"]
        dtype = summary["dtype"]
        float64_error = relative_error(logits64, expected)
        dtype_error = relative_error(dtype_logits, expected)
        dtype_tolerance = DTYPE_TOLERANCE.get(dtype, 1e-4)
        text_error = (
            relative_error(remote_text_logits, package_logits)
            if package_ids is not None and np.array_equal(package_ids, remote_ids)
            else float("inf")
        )
        loaded_from_checkpoint = summary["module"].startswith("transformers_modules.") and summary["package_blocked"]
        section.update(
            loaded_class=f"{summary['module'].split('.')[-1]}.{summary['class']}",
            loaded_from_checkpoint_code=loaded_from_checkpoint,
            dtype=dtype,
            float64_max_relative_error=float64_error,
            dtype_max_relative_error=dtype_error,
            dtype_tolerance=dtype_tolerance,
            text_max_relative_error=text_error,
            passed=bool(
                loaded_from_checkpoint
                and float64_error <= FLOAT64_TOLERANCE
                and dtype_error <= dtype_tolerance
                and text_error <= TEXT_TOLERANCE
            ),
        )
        return section


def remote_code_problems(section: dict[str, Any]) -> list[str]:
    """Human-readable reasons a ``checks.remote_code`` section failed (empty when it passed)."""
    if section.get("passed"):
        return []
    if "error" in section:
        return [f"remote code: {section['error']}"]
    problems = []
    if not section.get("loaded_from_checkpoint_code"):
        problems.append("remote code: the model did not load from the checkpoint's own code files")
    if section["float64_max_relative_error"] > section["float64_tolerance"]:
        problems.append(
            f"remote code: the head computed by the checkpoint's code differs from [G|S](P h + c) by a relative "
            f"{section['float64_max_relative_error']:.3g} in float64 (tolerance {section['float64_tolerance']:g}): "
            "the shipped code does not compute what the certificate states"
        )
    if section["dtype_max_relative_error"] > section["dtype_tolerance"]:
        problems.append(
            f"remote code: in {section['dtype']} the head differs from the float64 reference by a relative "
            f"{section['dtype_max_relative_error']:.3g} (tolerance {section['dtype_tolerance']:g})"
        )
    if section["text_max_relative_error"] > section["text_tolerance"]:
        problems.append(
            "remote code: on the probe texts the checkpoint's code and the package give different logits "
            f"(relative {section['text_max_relative_error']:.3g}, tolerance {section['text_tolerance']:g})"
        )
    return problems
