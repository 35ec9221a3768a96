"""What a person sees: one progress bar per long phase and a short summary by default, nothing chatty."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import minilm_dir

CHATTY = ("Flattening the indices", "Reading labels", "Encoding labels", "Generating train split", "Loading weights")


@pytest.fixture(scope="module")
def toy_files(tmp_path_factory) -> list[str]:
    folder = tmp_path_factory.mktemp("console")
    words = ["water", "food", "fire", "flood", "road", "storm"]
    rows = {
        split: [{"text": f"need {a} and {b} now", "labels": sorted({a, b})} for a in words for b in words][:count]
        for split, count in (("train", 36), ("validation", 12), ("test", 12))
    }
    files = []
    for split, records in rows.items():
        path = folder / f"{split}.jsonl"
        path.write_text("".join(json.dumps(record) + "\n" for record in records))
        files.append(f"{split}={path}")
    return files


def run_train(toy_files: list[str], out: Path, *flags: str) -> subprocess.CompletedProcess:
    """The CLI in a fresh process; stdout/stderr decoded without newline translation (a bar redraws with \\r)."""
    argv = [sys.executable, "-m", "hf_dft_head.cli", *[f for f in flags if f == "-v"], "train"]
    argv += ["--encoder", minilm_dir(), "--encoder-layers", "1", "--data-files", *toy_files, "--output-dir", str(out)]
    argv += ["--freeze-encoder", "--k", "2", "--epochs", "2", "--batch-size", "8", *[f for f in flags if f != "-v"]]
    environment = {key: value for key, value in os.environ.items() if key != "HF_HUB_DISABLE_PROGRESS_BARS"}
    run = subprocess.run(argv, capture_output=True, env=environment, timeout=600)
    run.stdout, run.stderr = run.stdout.decode(), run.stderr.decode()
    return run


def test_default_output_is_a_few_bars_and_a_summary(toy_files, tmp_path):
    run = run_train(toy_files, tmp_path / "run")
    assert run.returncode == 0, run.stderr[-3000:]
    output = run.stdout + run.stderr
    assert not any(word in output for word in CHATTY), output
    assert "Encoding train with the frozen encoder" in run.stderr and "Training" in run.stderr  # the long phases
    # What stays on a terminal: tqdm redraws a bar in place with carriage returns; lines end with newlines.
    lines = [line for line in output.split("\n") if line.strip()]
    assert len(lines) <= 12, "\n".join(lines)
    assert run.stdout.startswith("Data: 36 train / 12 validation / 12 test examples")
    assert "Trained a DFT head (k=2, 0 slack dims, cooccurrence order) for 2 epochs" in run.stdout
    assert f"Checkpoint and records: {tmp_path / 'run'}" in run.stdout


def test_quiet_shows_no_progress_at_all(toy_files, tmp_path):
    run = run_train(toy_files, tmp_path / "quiet", "--quiet")
    assert run.returncode == 0, run.stderr[-3000:]
    assert "it/s" not in run.stderr and "examples/s" not in run.stderr and "step/s" not in run.stderr, run.stderr
    assert "Trained a DFT head" in run.stdout
