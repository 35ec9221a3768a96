"""Optimiser steps per second of head-only training on cached features: the row loader vs the in-memory path.

The run trains the disaster main job's head -- a DFT head (k = 10, 8 slack dims, co-occurrence label order, batch
128; ``--slack-dims 0`` for the pure head) on frozen all-MiniLM-L6-v2 features of the bundled disaster-response
messages, cached by ``datasets`` -- with the product's own loop (:func:`hf_dft_head.training.train`), six times,
each in its own process:

- ``old``: the loop as it was before the in-memory path (``HF_DFT_DEBUG_ROW_LOADER=1``): every batch read row by
  row from the ``datasets`` table and collated per example, torch's default thread count;
- ``old-1t``: the same with ``OMP_NUM_THREADS=1``, which separates the gain of the data path from that of the thread
  count;
- ``new``: the default path: the split's features as one tensor, batches cut from it by index, one torch thread
  for a head this small;

each once on the machine as it is ("quiet") and once beside a CPU-burning process the benchmark starts ("busy":
``python -c "while True: pass"``). Steps per second come from the run's ``log.jsonl``: the loss is logged every 20
optimiser steps with the wall time, and the rate is the steps between consecutive loss records of the same epoch
over their time (evaluation and saving at epoch ends fall outside). Peak RSS is the process's ``ru_maxrss``
(encoder, data and features included). The machine may be shared with other jobs: compare the ratios printed,
measured within one run, more than the absolute rates.

Usage (from the repository root; the first run computes the features if they are not cached yet)::

    PYTHONPATH=. .venv/bin/python benchmarks/train_speed.py
    PYTHONPATH=. .venv/bin/python benchmarks/train_speed.py --old-epochs 1 --new-epochs 3   # quicker
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

DEFAULT_OUTPUT_ROOT = "/tmp/hf_dft_head_train_speed"
TARGET_SPEEDUP = 5.0  # the new loop's steps/s over the old one's, on the machine as it is
LOOPS = ("old", "old-1t", "new")
TARGET_BUSY_SHARE = 0.5  # the new loop's steps/s beside one busy process over its steps/s without it


def steps_per_second(log_path: Path) -> tuple[float, int, float]:
    """``(steps/s, steps timed, seconds)`` from consecutive loss records of the same epoch in ``log.jsonl``."""
    records = [json.loads(line) for line in log_path.read_text().splitlines()]
    losses = [record for record in records if "loss" in record]
    steps, seconds = 0, 0.0
    for before, after in zip(losses, losses[1:]):
        if before["epoch"] == after["epoch"]:
            steps += after["step"] - before["step"]
            seconds += after["time"] - before["time"]
    if seconds <= 0:
        raise RuntimeError(f"{log_path}: fewer than two loss records in one epoch; train more epochs.")
    return steps / seconds, steps, seconds


def child(loop: str, epochs: int, slack_dims: int, output_dir: str) -> None:
    """Train once in this process and print one JSON line with the rate and the peak RSS."""
    from hf_dft_head.console import configure_output
    from hf_dft_head.training import ROW_LOADER_ENV, TrainingArguments, train

    if (os.environ.get(ROW_LOADER_ENV) == "1") != loop.startswith("old"):
        raise RuntimeError(f"loop {loop!r} needs {ROW_LOADER_ENV}=1 exactly when it is an old one")
    configure_output(quiet=True)
    args = TrainingArguments(
        output_dir=output_dir,
        overwrite=True,
        freeze_encoder=True,
        head="dft",
        k=10,
        slack_dims=slack_dims,
        batch_size=128,
        epochs=epochs,
        logging_steps=20,
    )
    results = train(args)
    rate, steps, seconds = steps_per_second(Path(output_dir) / "log.jsonl")
    record = {
        "loop": loop,
        "steps_per_second": rate,
        "steps_timed": steps,
        "seconds_timed": seconds,
        "train_seconds": results["train_seconds"],
        "global_step": results["global_step"],
        "test_f1@5": results["test"]["f1@5"],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    print("RESULT " + json.dumps(record))


def run_child(loop: str, epochs: int, slack_dims: int, output_dir: Path, busy: bool) -> dict[str, Any]:
    """One training process, beside a CPU-burning process when ``busy``."""
    from hf_dft_head.training import ROW_LOADER_ENV

    env = {key: value for key, value in os.environ.items() if key != ROW_LOADER_ENV}
    if loop.startswith("old"):
        env[ROW_LOADER_ENV] = "1"
    if loop == "old-1t":
        env["OMP_NUM_THREADS"] = "1"
    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
    try:
        command = [sys.executable, __file__, "--child", loop, "--epochs", str(epochs), "--slack-dims", str(slack_dims)]
        command += ["--output-dir", str(output_dir)]
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=3600)
    finally:
        if burner is not None:
            burner.kill()
            burner.wait()
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{loop} training failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT ") :])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--old-epochs", type=int, default=2, help="epochs of the old loop (165 steps each)")
    parser.add_argument("--new-epochs", type=int, default=6, help="epochs of the new loop")
    parser.add_argument("--slack-dims", type=int, default=8, help="slack dims of the DFT head (k = 10)")
    parser.add_argument("--output-root", default=DEFAULT_OUTPUT_ROOT, help="run folders (replaced)")
    parser.add_argument("--json", help="also write the measurements to this file")
    parser.add_argument("--repeats", type=int, default=1, help="measure each case this many times; report medians")
    parser.add_argument("--child", choices=LOOPS, help=argparse.SUPPRESS)
    parser.add_argument("--epochs", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--output-dir", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.child:
        child(options.child, options.epochs, options.slack_dims, options.output_dir)
        return

    root = Path(options.output_root)
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    started = time.time()
    for _ in range(options.repeats):
        for condition in ("quiet", "busy"):
            for loop in LOOPS:
                epochs = options.new_epochs if loop == "new" else options.old_epochs
                folder = root / f"{condition}-{loop}"
                row = run_child(loop, epochs, options.slack_dims, folder, busy=condition == "busy")
                runs.setdefault((condition, loop), []).append(row)
                print(
                    f"  {condition:5s} {loop:6s}: {row['steps_per_second']:7.1f} steps/s over {row['steps_timed']} "
                    f"steps, peak RSS {row['peak_rss_mb']:.0f} MB",
                    flush=True,
                )
    rate = {key: statistics.median(row["steps_per_second"] for row in rows) for key, rows in runs.items()}
    rss = {key: max(row["peak_rss_mb"] for row in rows) for key, rows in runs.items()}
    load = os.getloadavg()
    print(
        f"\nDFT head k=10, {options.slack_dims} slack dims, batch 128, frozen MiniLM features of disaster-response "
        f"(21,045 train rows); {os.cpu_count()} CPUs, load average at the end {load[0]:.1f} / {load[1]:.1f} / "
        f"{load[2]:.1f}; {options.repeats} repeat(s), medians; {time.time() - started:.0f} s in all."
    )
    print(
        f"{'loop':7s} {'quiet steps/s':>14s} {'busy steps/s':>13s} {'busy/quiet':>11s} {'new/this quiet':>15s} "
        f"{'new/this busy':>14s} {'peak RSS MB':>12s}"
    )
    for loop in LOOPS:
        quiet, busy = rate["quiet", loop], rate["busy", loop]
        print(
            f"{loop:7s} {quiet:14.1f} {busy:13.1f} {busy / quiet:11.2f} {rate['quiet', 'new'] / quiet:15.1f} "
            f"{rate['busy', 'new'] / busy:14.1f} {max(rss['quiet', loop], rss['busy', loop]):12.0f}"
        )
    speedup = rate["quiet", "new"] / rate["quiet", "old"]
    busy_share = rate["busy", "new"] / rate["quiet", "new"]
    met = "met" if speedup >= TARGET_SPEEDUP else "NOT met"
    print(f"target new >= {TARGET_SPEEDUP:.0f}x old (quiet): {met} ({speedup:.1f}x)")
    met = "met" if busy_share >= TARGET_BUSY_SHARE else "NOT met"
    print(f"target new busy >= {TARGET_BUSY_SHARE:.0%} of new quiet: {met} ({busy_share:.0%})")
    if options.json:
        payload = {f"{condition}-{loop}": rows for (condition, loop), rows in runs.items()}
        Path(options.json).write_text(json.dumps(payload, indent=2))


if __name__ == "__main__":
    main()
