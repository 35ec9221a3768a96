"""Optimiser steps per second of head-only training on cached features: the row loader vs the in-memory path.

The run trains the disaster main job's head -- a DFT head (k = 10, 8 slack dims, co-occurrence label order, batch
128; ``--slack-dims 0`` for the pure head) on frozen all-MiniLM-L6-v2 features of the bundled disaster-response
messages, cached by ``datasets`` -- with the product's own loop (:func:`hf_dft_head.training.train`), once per loop,
each in its own process:

- ``old``: the loop as it was before the in-memory path (``HF_DFT_DEBUG_ROW_LOADER=1``): every batch read row by
  row from the ``datasets`` table and collated per example, torch's default thread count;
- ``old-1t``: the same with ``OMP_NUM_THREADS=1``, which separates the gain of the data path from that of the thread
  count;
- ``new``: the default path: the split's features as one tensor, batches cut from it by index, one torch thread
  for a head this small.

Quiet and busy are measured inside the same run, epoch by epoch, so that the load of other jobs on a shared machine
weighs on both alike: the benchmark starts a CPU-burning process (``python -c "while True: pass"``) and keeps it
stopped (SIGSTOP) during even epochs ("quiet") and running (SIGCONT) during odd ones ("busy"); a thread of the
benchmark's own process (not the training process, whose GIL it would contend for) watches ``log.jsonl`` and
switches the burner when an epoch's evaluation is logged (so during the checkpoint saving, before the next epoch's
first step). Epoch 0 is a warm-up and counted in neither. Steps per second come from ``log.jsonl``: the loss
is logged every 20 optimiser steps with the wall time, and the rate is the steps between consecutive loss records of
the same epoch over their time (evaluation and saving fall outside). Peak RSS is the training process's
``ru_maxrss`` (encoder, data and features included). ``--repeats`` runs the three loops again (medians reported).
At the end a plain Python counting loop is timed in the benchmark's own process with the burner stopped and running
in turn: its busy/quiet share is what the machine leaves any one-thread process, the ceiling for the loops'.

Usage (from the repository root; the first run computes the features if they are not cached yet)::

    PYTHONPATH=. .venv/bin/python benchmarks/train_speed.py
    PYTHONPATH=. .venv/bin/python benchmarks/train_speed.py --repeats 3 --json /tmp/train_speed.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

DEFAULT_OUTPUT_ROOT = "/tmp/hf_dft_head_train_speed"
LOOPS = ("old", "old-1t", "new")
TARGET_SPEEDUP = 5.0  # the new loop's steps/s over the old one's, without the busy process
TARGET_BUSY_SHARE = 0.5  # the new loop's steps/s beside one busy process over its steps/s without it


def is_busy(epoch: int) -> bool | None:
    """Whether the burner runs during ``epoch``: odd epochs busy, even quiet, epoch 0 a warm-up (``None``)."""
    return None if epoch == 0 else epoch % 2 == 1


def rates_by_condition(log_path: Path) -> dict[str, dict[str, float]]:
    """``{"quiet"|"busy": {"steps_per_second", "steps", "seconds"}}`` from consecutive loss records of the same epoch
    in ``log.jsonl``."""
    records = [json.loads(line) for line in log_path.read_text().splitlines()]
    losses = [record for record in records if "loss" in record]
    totals = {"quiet": [0, 0.0], "busy": [0, 0.0]}
    for before, after in zip(losses, losses[1:]):
        busy = is_busy(before["epoch"])
        if before["epoch"] == after["epoch"] and busy is not None:
            total = totals["busy" if busy else "quiet"]
            total[0] += after["step"] - before["step"]
            total[1] += after["time"] - before["time"]
    out = {}
    for condition, (steps, seconds) in totals.items():
        if seconds <= 0:
            raise RuntimeError(f"{log_path}: no timed steps while {condition}; train more epochs.")
        out[condition] = {"steps_per_second": steps / seconds, "steps": steps, "seconds": seconds}
    return out


def switch_burner_by_epoch(burner: subprocess.Popen, log_path: Path, finished: threading.Event) -> None:
    """Run ``burner`` during busy epochs, stop it otherwise: epoch ``e`` starts once ``e`` evaluations are logged."""
    running = False
    while not finished.wait(0.01):
        try:
            evaluations = log_path.read_text().count('"eval"')
        except FileNotFoundError:
            continue
        wanted = bool(is_busy(evaluations))
        if wanted != running:
            burner.send_signal(signal.SIGCONT if wanted else signal.SIGSTOP)
            running = wanted


def reference_busy_share(windows: int = 8, seconds: float = 1.0) -> tuple[float, float]:
    """``(quiet, busy)`` iterations per second of a plain Python counting loop in this process, in windows that
    alternate with the burner stopped and running: what the machine gives any one-thread process, the ceiling of the
    training loop's busy/quiet share."""
    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    rates: dict[bool, list[float]] = {False: [], True: []}
    try:
        for window in range(windows):
            busy = window % 2 == 1
            burner.send_signal(signal.SIGCONT if busy else signal.SIGSTOP)
            time.sleep(0.2)  # let the scheduler settle
            count, begin = 0, time.perf_counter()
            while (elapsed := time.perf_counter() - begin) < seconds:
                for _ in range(10_000):
                    count += 1
            rates[busy].append(count / elapsed)
    finally:
        burner.kill()
        burner.wait()
    return statistics.median(rates[False]), statistics.median(rates[True])


def child(loop: str, epochs: int, slack_dims: int, output_dir: str) -> None:
    """Train once in this process; print one JSON line with the rates and the peak RSS."""
    from hf_dft_head.console import configure_output
    from hf_dft_head.training import ROW_LOADER_ENV, train
    from hf_dft_head.training_args import DFTTrainingArguments

    if (os.environ.get(ROW_LOADER_ENV) == "1") != loop.startswith("old"):
        raise RuntimeError(f"loop {loop!r} needs {ROW_LOADER_ENV}=1 exactly when it is an old one")
    configure_output(quiet=True)
    args = DFTTrainingArguments(
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
    record = {
        "loop": loop,
        **rates_by_condition(Path(output_dir) / "log.jsonl"),
        "train_seconds": results["train_seconds"],
        "global_step": results["global_step"],
        "test_f1@5": results["test"]["f1@5"],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    print("RESULT " + json.dumps(record))


def run_child(loop: str, epochs: int, slack_dims: int, output_dir: Path) -> dict[str, Any]:
    """One training process (the old loops with the row-loader hook, ``old-1t`` on one OpenMP thread) beside the
    burner, switched by epoch."""
    from hf_dft_head.training import ROW_LOADER_ENV

    env = {key: value for key, value in os.environ.items() if key != ROW_LOADER_ENV}
    if loop.startswith("old"):
        env[ROW_LOADER_ENV] = "1"
    if loop == "old-1t":
        env["OMP_NUM_THREADS"] = "1"
    command = [sys.executable, __file__, "--child", loop, "--epochs", str(epochs), "--slack-dims", str(slack_dims)]
    command += ["--output-dir", str(output_dir)]
    log_path = output_dir / "log.jsonl"
    if log_path.exists():
        log_path.unlink()  # --overwrite empties the folder only later; the watcher must not read the old log
    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    burner.send_signal(signal.SIGSTOP)
    finished = threading.Event()
    watcher = threading.Thread(target=switch_burner_by_epoch, args=(burner, log_path, finished), daemon=True)
    watcher.start()
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=3600)
    finally:
        finished.set()
        watcher.join()
        burner.kill()
        burner.wait()
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{loop} training failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT ") :])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--old-epochs", type=int, default=5, help="epochs of the old loops (165 steps each)")
    parser.add_argument("--new-epochs", type=int, default=13, help="epochs of the new loop")
    parser.add_argument("--slack-dims", type=int, default=8, help="slack dims of the DFT head (k = 10)")
    parser.add_argument("--repeats", type=int, default=1, help="run the loops this many times; report medians")
    parser.add_argument("--output-root", default=DEFAULT_OUTPUT_ROOT, help="run folders (replaced)")
    parser.add_argument("--json", help="also write the measurements to this file")
    parser.add_argument(
        "--loops", default=",".join(LOOPS), help=f"which loops to run, comma-separated (default: all of {LOOPS})"
    )
    parser.add_argument("--child", choices=LOOPS, help=argparse.SUPPRESS)
    parser.add_argument("--epochs", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--output-dir", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.child:
        child(options.child, options.epochs, options.slack_dims, options.output_dir)
        return
    loops = tuple(loop for loop in LOOPS if loop in options.loops.split(","))
    if not loops or set(options.loops.split(",")) - set(LOOPS):
        parser.error(f"--loops takes names from {LOOPS}, got {options.loops!r}")
    if min(options.old_epochs, options.new_epochs) < 3:
        parser.error("--old-epochs and --new-epochs must be >= 3 (a warm-up epoch, then quiet and busy ones)")

    runs: dict[str, list[dict[str, Any]]] = {loop: [] for loop in loops}
    started = time.time()
    for _ in range(options.repeats):
        for loop in loops:
            epochs = options.new_epochs if loop == "new" else options.old_epochs
            row = run_child(loop, epochs, options.slack_dims, Path(options.output_root) / loop)
            runs[loop].append(row)
            print(
                f"  {loop:6s}: quiet {row['quiet']['steps_per_second']:7.1f} steps/s ({row['quiet']['steps']} steps), "
                f"busy {row['busy']['steps_per_second']:7.1f} steps/s ({row['busy']['steps']} steps), "
                f"peak RSS {row['peak_rss_mb']:.0f} MB",
                flush=True,
            )

    quiet_reference, busy_reference = reference_busy_share()

    def median(loop: str, condition: str) -> float:
        return statistics.median(row[condition]["steps_per_second"] for row in runs[loop])

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
    reference = "new" if "new" in loops else loops[-1]
    for loop in loops:
        quiet, busy = median(loop, "quiet"), median(loop, "busy")
        rss = max(row["peak_rss_mb"] for row in runs[loop])
        print(
            f"{loop:7s} {quiet:14.1f} {busy:13.1f} {busy / quiet:11.2f} {median(reference, 'quiet') / quiet:15.1f} "
            f"{median(reference, 'busy') / busy:14.1f} {rss:12.0f}"
        )
    print(
        f"a plain Python loop in the benchmark's process, same alternation: busy/quiet "
        f"{busy_reference / quiet_reference:.2f} (what this machine leaves any one-thread process)"
    )
    if "old" in loops and "new" in loops:
        speedup = median("new", "quiet") / median("old", "quiet")
        met = "met" if speedup >= TARGET_SPEEDUP else "NOT met"
        print(f"target new >= {TARGET_SPEEDUP:.0f}x old (quiet): {met} ({speedup:.1f}x)")
    if "new" in loops:
        busy_share = median("new", "busy") / median("new", "quiet")
        met = "met" if busy_share >= TARGET_BUSY_SHARE else "NOT met"
        print(f"target new busy >= {TARGET_BUSY_SHARE:.0%} of new quiet: {met} ({busy_share:.0%})")
    if options.json:
        Path(options.json).write_text(json.dumps(runs, indent=2))


if __name__ == "__main__":
    main()
