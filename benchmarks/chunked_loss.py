"""Plain vs chunked BCE-with-logits of the DFT head at very large n: time and peak memory of forward+backward.

Issue 12, item 5. The plain path is what training does today: the head's logits ``(B, n)`` (``DFTHead``, the cached
Gale rows, matmul path), a dense multi-hot target ``(B, n)`` built from the batch's label ids, and
``binary_cross_entropy_with_logits``; autograd keeps the logits and the loss's intermediates and its backward makes
a ``(B, n)`` gradient. The chunked path (:func:`hf_dft_head.layers.dft_bce_loss`) never holds ``(B, n)``: per
block of labels it synthesises the block's logits from the ``2k + 1 (+ s)`` coefficients, adds the block's
``softplus`` to the loss and its ``sigmoid`` times the block's Gale rows to the coefficients' gradient, then drops
the block; the positives (label ids) correct the loss and the gradient at their few entries.

Each case (path, n, B) runs in a fresh subprocess on one torch thread: features ``(B, d)``, a fresh ``DFTHead``
(its Gale cache built before measuring), ``--positives`` random label ids per row. Measured over one step --
building the target from the ids, forward, backward:

- *ms*: median of ``--repeats`` steps after one warm-up;
- *alloc MB*: peak bytes torch's CPU allocator handed out during the step above what was alive before it (torch
  profiler allocation events, as in ``head_speed.py``);
- *RSS MB*: the process's peak RSS over the timed steps (``VmHWM``, reset after the warm-up step) above its RSS
  just before them, in that fresh process: what the machine actually had to give (allocator caching and library
  workspaces included).

Ratios are chunked / plain of the same n and B, in the same run.

Usage (from the repository root)::

    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python benchmarks/chunked_loss.py
    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python benchmarks/chunked_loss.py --sizes 100000 --batches 128
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch
from head_speed import step_peak_allocation

from hf_dft_head.layers import DFTHead, dft_bce_loss


def rss_bytes(field: str) -> int:
    """``VmRSS`` (now) or ``VmHWM`` (peak since the last reset) of this process, from ``/proc/self/status``."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def reset_peak_rss() -> None:
    """Reset ``VmHWM`` to the current RSS (Linux: ``5`` into ``/proc/self/clear_refs``), so that building the head
    (its float64 Gale matrix is a few hundred MB at n = 1M) does not count as the step's peak."""
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")


def case(path: str, num_labels: int, batch: int, args: argparse.Namespace) -> dict:
    """One (path, n, B) measured in this process; returns the row."""
    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(0)
    head = DFTHead(args.dim, num_labels, args.k, args.slack_dims, path="matmul")
    head.dft.gale(torch.device("cpu"), torch.float32)  # the cache both paths read, built before measuring
    features = torch.randn(batch, args.dim, generator=generator)
    rows = torch.arange(batch).repeat_interleave(args.positives)
    cols = torch.randint(0, num_labels, (rows.numel(),), generator=generator)

    def step() -> None:
        if path == "plain":
            target = torch.zeros(batch, num_labels)
            target[rows, cols] = 1.0
            loss = torch.nn.functional.binary_cross_entropy_with_logits(head(features), target)
        else:
            loss = dft_bce_loss(head.project(features), head.dft, rows, cols, block_size=args.block_size)
        loss.backward()
        for parameter in head.parameters():
            parameter.grad = None

    step()  # warm-up: allocator, kernels
    reset_peak_rss()
    rss_before = rss_bytes("VmRSS")
    times = []
    for _ in range(args.repeats):
        begin = time.perf_counter()
        step()
        times.append(time.perf_counter() - begin)
    rss_peak = rss_bytes("VmHWM")
    alloc = step_peak_allocation(step)
    return {
        "path": path,
        "n": num_labels,
        "batch": batch,
        "ms": 1e3 * statistics.median(times),
        "alloc_mb": None if alloc is None else alloc / 2**20,
        "rss_mb": max(rss_peak - rss_before, 0) / 2**20,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100000,1000000", help="label counts n, comma-separated")
    parser.add_argument("--batches", default="128,256", help="batch sizes B, comma-separated")
    parser.add_argument("--k", type=int, default=10, help="DFT k")
    parser.add_argument("--slack-dims", type=int, default=0, help="DFT slack columns")
    parser.add_argument("--dim", type=int, default=384, help="feature width d")
    parser.add_argument("--positives", type=int, default=10, help="random positive labels per row")
    parser.add_argument("--block-size", type=int, default=8192, help="labels per block of the chunked path")
    parser.add_argument("--repeats", type=int, default=3, help="timed steps per case (median)")
    parser.add_argument("--json", help="also write the rows to this file")
    parser.add_argument("--case", help=argparse.SUPPRESS)  # "path,n,B": run one case in this process
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.case:
        path, n, batch = args.case.split(",")
        print("RESULT " + json.dumps(case(path, int(n), int(batch), args)), flush=True)
        return
    rows = []
    forwarded = [f"--{name.replace('_', '-')}={getattr(args, name)}" for name in ("k", "slack_dims", "dim")]
    forwarded += [f"--positives={args.positives}", f"--block-size={args.block_size}", f"--repeats={args.repeats}"]
    started = time.time()
    for n in [int(text) for text in args.sizes.split(",")]:
        for batch in [int(text) for text in args.batches.split(",")]:
            for path in ("plain", "chunked"):
                command = [sys.executable, __file__, "--case", f"{path},{n},{batch}", *forwarded]
                done = subprocess.run(command, capture_output=True, text=True, timeout=1800)
                lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
                if done.returncode != 0 or not lines:
                    raise RuntimeError(f"case {path},{n},{batch} failed:\n{done.stderr[-3000:]}")
                rows.append(json.loads(lines[-1][len("RESULT ") :]))
    load = os.getloadavg()
    print(
        f"DFT head k={args.k}, {args.slack_dims} slack dims, d={args.dim}, {args.positives} positives per row, block "
        f"{args.block_size}; 1 torch thread; median of {args.repeats} steps; load average {load[0]:.1f} / "
        f"{load[1]:.1f} / {load[2]:.1f}; {time.time() - started:.0f} s in all"
    )
    print(
        f"{'n':>9s} {'B':>4s} {'path':8s} {'ms':>9s} {'alloc MB':>9s} {'RSS MB':>8s}   "
        f"{'time x':>7s} {'alloc x':>8s} {'RSS x':>6s}"
    )
    plain = {(row["n"], row["batch"]): row for row in rows if row["path"] == "plain"}
    for row in rows:
        base = plain[(row["n"], row["batch"])]
        ratios = [row[key] / base[key] if row[key] and base[key] else float("nan") for key in ("ms", "alloc_mb")]
        ratios.append(row["rss_mb"] / base["rss_mb"] if base["rss_mb"] else float("nan"))
        alloc = f"{row['alloc_mb']:9.1f}" if row["alloc_mb"] is not None else f"{'n/a':>9s}"
        print(
            f"{row['n']:9d} {row['batch']:4d} {row['path']:8s} {row['ms']:9.1f} {alloc} {row['rss_mb']:8.1f}   "
            f"{ratios[0]:7.2f} {ratios[1]:8.3f} {ratios[2]:6.3f}"
        )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=2)


if __name__ == "__main__":
    main()
