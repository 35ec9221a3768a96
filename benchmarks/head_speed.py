"""Forward+backward time and memory of the DFT head against the dense and bottleneck heads.

Issue 2, item 6. Every head maps encoder features ``(B, d)`` to logits ``(B, n)`` and is
trained with BCE-with-logits against a random sparse multi-hot target, so the backward
pass is the one a real training step runs (including the gradient into the features,
i.e. into the encoder). Measured per ``n``, all in one process so the ratios compare like
with like:

- ``dense``       ``z = W h + b``                                 (the usual sigmoid head)
- ``bottleneck``  ``z = W2 (W1 h + b1) + b2`` with ``r`` = ``--bottleneck-dim``
- ``dft fft``     ``DFTHead(d, n, k, path="fft")``
- ``dft matmul``  ``DFTHead(d, n, k, path="matmul")`` (``G`` cached, counted as a fixed buffer)
- ``dft +slack``  ``DFTHead(d, n, k, slack_dims=s, path="auto")``
- ``loss floor``  no head: the ``(B, n)`` BCE and its backward alone, the least any head costs

Columns:

- *params*: trainable parameters (``head_parameter_count``, cross-checked against the module).
- *head MB*: parameters + gradients + Adam's two moment buffers = ``16 * params`` bytes in
  fp32, plus the cached Gale matrix ``G`` (``4 n (2k+1)`` bytes) for the matmul path.
- *step peak MB*: measured peak of bytes the torch CPU allocator handed out during one
  forward+backward step, above what was alive before it (so it counts gradients, logits,
  loss intermediates and autograd buffers; not the parameters, features or target). Read
  from ``torch.profiler`` allocation events; library workspaces allocated outside torch's
  allocator (e.g. inside the FFT backend) are not seen.
- *fwd+bwd ms*: median of ``--repeats`` timed steps after ``--warmup`` untimed rounds. The
  heads of one ``n`` are timed round-robin (one step each per round), so load from other
  processes hits them alike; gradients are set to ``None`` between steps, untimed, as
  ``optimizer.zero_grad()`` does by default, so each step allocates its gradients afresh.
  One torch thread by default: on a shared 2-core machine multi-threaded GEMMs stall at
  their barriers whenever another process holds a core, and their times scatter widely.

A second table times the DFT layer alone (input ``(B, 2k+1)``, a fixed random upstream
gradient) on both paths over a grid of ``n`` and ``k`` to locate the fft/matmul crossover
that ``choose_dft_path`` should encode.

Usage (from the repository root)::

    PYTHONPATH=. .venv/bin/python benchmarks/head_speed.py                 # full run
    PYTHONPATH=. .venv/bin/python benchmarks/head_speed.py --quick         # n <= 10k smoke test
    PYTHONPATH=. .venv/bin/python benchmarks/head_speed.py --sizes 1k,100k --repeats 5 --json rows.json
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F
from torch.profiler import ProfilerActivity, profile

from hf_dft_head.layers import BottleneckHead, DenseHead, DFTHead, DFTLayer, choose_dft_path, head_parameter_count

BYTES_FP32 = 4
# Parameters, gradients, and Adam's exp_avg and exp_avg_sq: four fp32 copies of every parameter.
TRAINING_COPIES = 4
MB = 1e6
FULL_SIZES = "1k,10k,100k,1M"
QUICK_SIZES = "1k,10k"
CROSSOVER_SIZES = (1_000, 10_000, 100_000)
CROSSOVER_KS = (1, 3, 5, 10, 25, 50, 100)


@dataclass
class HeadRow:
    """One measured (or skipped) head at one ``n``; the JSON rows are these dicts."""

    num_labels: int
    head: str
    path: str
    trainable_params: int
    fixed_buffer_bytes: int
    head_memory_bytes: int
    step_peak_bytes: int | None
    median_ms: float | None
    q1_ms: float | None
    q3_ms: float | None
    speedup_vs_dense: float | None
    memory_reduction_vs_dense: float | None
    note: str = ""


@dataclass
class CrossoverRow:
    """Forward+backward time of the DFT layer alone on both paths at one ``(n, k)``."""

    num_labels: int
    k: int
    fft_ms: float
    matmul_ms: float
    faster: str
    choose_dft_path: str


def parse_sizes(text: str) -> list[int]:
    """``"1k,10k,100k,1M"`` -> ``[1000, 10000, 100000, 1000000]`` (plain integers also accepted)."""
    multipliers = {"k": 1_000, "m": 1_000_000}
    sizes = []
    for item in text.split(","):
        item = item.strip().lower()
        if not item:
            continue
        scale = multipliers.get(item[-1], 1)
        digits = item[:-1] if item[-1] in multipliers else item
        try:
            value = int(float(digits) * scale)
        except ValueError:
            raise ValueError(
                f"--sizes: cannot read {item!r}; use integers or a k/M suffix, e.g. 1k,10k,100k,1M."
            ) from None
        if value < 2:
            raise ValueError(f"--sizes: every n must be >= 2, got {item!r}.")
        sizes.append(value)
    if not sizes:
        raise ValueError("--sizes: give at least one label count, e.g. --sizes 1k,10k.")
    return sizes


def available_memory_bytes() -> int | None:
    """``MemAvailable`` from ``/proc/meminfo`` in bytes, or ``None`` where it cannot be read."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def random_batch(
    batch_size: int, in_features: int, num_labels: int, positives: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Features ``(B, d)`` that require grad (the encoder is fine-tuned) and a multi-hot target ``(B, n)``.

    Each row of the target has ``positives`` ones at distinct random labels.
    """
    features = torch.randn(batch_size, in_features, generator=generator).requires_grad_(True)
    scores = torch.rand(batch_size, num_labels, generator=generator)
    on = scores.topk(min(positives, num_labels), dim=1).indices
    target = torch.zeros(batch_size, num_labels).scatter_(1, on, 1.0)
    return features, target


def training_step(head: nn.Module, features: torch.Tensor, target: torch.Tensor) -> None:
    """One forward+backward: logits, mean BCE with logits against ``target``, backward into head and features.

    Call with gradients already ``None`` (``release_gradients``), as after ``optimizer.zero_grad()``,
    so the step allocates its gradients the way a training step does.
    """
    loss = F.binary_cross_entropy_with_logits(head(features), target)
    loss.backward()


def release_gradients(head: nn.Module, features: torch.Tensor) -> None:
    """Set every gradient of ``head`` and of ``features`` to ``None`` (``zero_grad(set_to_none=True)``)."""
    head.zero_grad(set_to_none=True)
    features.grad = None


def interleaved_times(
    steps: list[Callable[[], None]], resets: list[Callable[[], None]], warmup: int, repeats: int
) -> list[list[float]]:
    """Wall-clock seconds of ``repeats`` timed calls of every ``steps[i]``, interleaved round-robin.

    Each round times every step once (starting at a rotating position), so a burst of load
    from other processes on a shared machine hits all candidates alike instead of one of them;
    ``resets[i]`` runs untimed after each call. ``warmup`` untimed rounds come first and the
    garbage collector is paused while timing.
    """
    for _ in range(warmup):
        for step, reset in zip(steps, resets):
            step()
            reset()
    gc.collect()
    gc_was_enabled = gc.isenabled()
    gc.disable()
    times: list[list[float]] = [[] for _ in steps]
    try:
        for round_index in range(repeats):
            for offset in range(len(steps)):
                index = (round_index + offset) % len(steps)
                start = time.perf_counter()
                steps[index]()
                times[index].append(time.perf_counter() - start)
                resets[index]()
    finally:
        if gc_was_enabled:
            gc.enable()
    return times


def step_peak_allocation(step: Callable[[], None]) -> int | None:
    """Peak bytes allocated by torch's CPU allocator during one ``step``, above the level before it.

    Replays the profiler's allocation/free events (``nbytes`` is negative for frees) in time
    order and keeps the running maximum. Returns ``None`` if this torch build's profiler does
    not expose the events (they are reached through ``kineto_results``, not a stable API).
    """
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    try:
        events = [event for event in prof.profiler.kineto_results.events() if event.name() == "[memory]"]
        events.sort(key=lambda event: event.start_ns())
    except (AttributeError, RuntimeError):
        return None
    live = peak = 0
    for event in events:
        live += event.nbytes()
        peak = max(peak, live)
    return peak


def quartiles_ms(times: list[float]) -> tuple[float, float, float]:
    """``(q1, median, q3)`` of ``times`` (seconds) in milliseconds."""
    if len(times) == 1:
        return times[0] * 1e3, times[0] * 1e3, times[0] * 1e3
    q1, median, q3 = statistics.quantiles(times, n=4, method="inclusive")
    return q1 * 1e3, median * 1e3, q3 * 1e3


class LossFloor(nn.Module):
    """No head at all: one feature broadcast to ``n`` logits, so a step costs only the loss and its backward.

    The time any head needs at least (the ``(B, n)`` BCE forward and backward), which bounds
    the speed-up a cheaper head can show. Shapes: ``(..., d)`` -> ``(..., n)`` (a view).
    """

    def __init__(self, num_labels: int):
        super().__init__()
        self.num_labels = num_labels

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``(..., d)`` -> ``(..., n)``: ``features[..., 0]`` repeated, without copying."""
        return features[..., :1].expand(*features.shape[:-1], self.num_labels)


def head_specs(args: argparse.Namespace, num_labels: int) -> list[tuple[str, str, Callable[[], nn.Module], int, int]]:
    """``(head name, path, builder, trainable params, fixed buffer bytes)`` for every head at ``num_labels``.

    Dense comes first: the ratios of the later rows are taken against it. The last entry is
    the loss floor (no head, zero parameters).
    """
    d, n, k, s, r = args.in_features, num_labels, args.k, args.slack_dims, args.bottleneck_dim
    auto_path = choose_dft_path(n, k)
    gale_bytes = BYTES_FP32 * n * (2 * k + 1)

    def path_label(path: str) -> str:
        return f"{path} (= auto)" if path == auto_path else path

    specs = [
        ("dense", "-", lambda: DenseHead(d, n), head_parameter_count("dense", d, n), 0),
        (
            f"bottleneck r={r}",
            "-",
            lambda: BottleneckHead(d, n, r),
            head_parameter_count("bottleneck", d, n, bottleneck_dim=r),
            0,
        ),
        (
            f"dft k={k}",
            path_label("fft"),
            lambda: DFTHead(d, n, k, path="fft"),
            head_parameter_count("dft", d, n, k=k),
            0,
        ),
        (
            f"dft k={k}",
            path_label("matmul"),
            lambda: DFTHead(d, n, k, path="matmul"),
            head_parameter_count("dft", d, n, k=k),
            gale_bytes,
        ),
    ]
    if s > 0:
        specs.append(
            (
                f"dft k={k} s={s}",
                f"auto -> {auto_path}",
                lambda: DFTHead(d, n, k, slack_dims=s, path="auto"),
                head_parameter_count("dft", d, n, k=k, slack_dims=s),
                gale_bytes if auto_path == "matmul" else 0,
            )
        )
    specs.append(("loss floor (no head)", "-", lambda: LossFloor(n), 0, 0))
    return specs


def dense_fits(args: argparse.Namespace, num_labels: int) -> tuple[bool, str]:
    """Whether a dense forward+backward at ``num_labels`` fits in ``--memory-fraction`` of free RAM.

    Only weights and gradients are allocated for the timing (Adam's moments are counted
    analytically), plus about five ``(B, n)`` activations (target, logits, their gradient,
    loss temporaries).
    """
    params = head_parameter_count("dense", args.in_features, num_labels)
    needed = BYTES_FP32 * (2 * params + 5 * args.batch_size * num_labels)
    available = available_memory_bytes()
    if available is None:
        return True, ""
    if needed > args.memory_fraction * available:
        return False, (
            f"skipped (memory): fwd+bwd needs ~{needed / 2**30:.1f} GiB, "
            f"the limit is {args.memory_fraction:g} x {available / 2**30:.1f} GiB available (--memory-fraction)"
        )
    return True, ""


def measure_heads(args: argparse.Namespace, num_labels: int, generator: torch.Generator) -> list[HeadRow]:
    """Time and size every head at ``num_labels``, interleaved; ratios against the dense head of this call."""
    features, target = random_batch(args.batch_size, args.in_features, num_labels, args.positives, generator)
    dense_memory = TRAINING_COPIES * BYTES_FP32 * head_parameter_count("dense", args.in_features, num_labels)
    rows: list[HeadRow] = []
    measured: list[HeadRow] = []
    heads: list[nn.Module] = []
    for name, path, build, params, buffer_bytes in head_specs(args, num_labels):
        head_memory = TRAINING_COPIES * BYTES_FP32 * params + buffer_bytes
        row = HeadRow(num_labels, name, path, params, buffer_bytes, head_memory, None, None, None, None, None, None)
        row.memory_reduction_vs_dense = dense_memory / head_memory if head_memory > 0 else None
        if name == "dense":
            fits, row.note = dense_fits(args, num_labels)
            if not fits:
                print(f"  n={num_labels:>9,} {name:<18} {row.note}", file=sys.stderr, flush=True)
                rows.append(row)
                continue
        torch.manual_seed(0)
        head = build()
        counted = sum(p.numel() for p in head.parameters() if p.requires_grad)
        if counted != params:
            raise RuntimeError(f"{name}: the module has {counted} trainable parameters, head_parameter_count {params}.")
        rows.append(row)
        measured.append(row)
        heads.append(head)
    steps = [functools.partial(training_step, head, features, target) for head in heads]
    resets = [functools.partial(release_gradients, head, features) for head in heads]
    all_times = interleaved_times(steps, resets, args.warmup, args.repeats)
    for row, step, reset, times in zip(measured, steps, resets, all_times):
        row.q1_ms, row.median_ms, row.q3_ms = quartiles_ms(times)
        row.step_peak_bytes = step_peak_allocation(step)
        reset()
        print(f"  n={num_labels:>9,} {row.head:<18} {row.path:<16} {row.median_ms:10.2f} ms", file=sys.stderr)
    dense_ms = next((row.median_ms for row in rows if row.head == "dense"), None)
    for row in rows:
        if dense_ms is not None and row.median_ms is not None:
            row.speedup_vs_dense = dense_ms / row.median_ms
        elif row.head != "dense" and row.median_ms is not None:
            row.note = "speedup n/a: dense skipped; memory ratio is analytic"
    del heads, steps, resets
    gc.collect()
    return rows


def layer_step(layer: DFTLayer, x: torch.Tensor, upstream: torch.Tensor) -> None:
    """Forward ``(B, 2k+1) -> (B, n)`` and backward of ``upstream`` ``(B, n)`` into ``x``."""
    layer(x).backward(upstream)


def measure_crossover(
    args: argparse.Namespace, sizes: tuple[int, ...], ks: tuple[int, ...], generator: torch.Generator
) -> list[CrossoverRow]:
    """Forward+backward of ``DFTLayer`` alone, both paths interleaved, for every ``(n, k)`` with ``2k + 1 <= n``."""
    rows = []
    for n in sizes:
        upstream = torch.randn(args.batch_size, n, generator=generator)
        for k in ks:
            if 2 * k + 1 > n:
                continue
            x = torch.randn(args.batch_size, 2 * k + 1, generator=generator).requires_grad_(True)
            layers = [DFTLayer(n, k, path=path) for path in ("fft", "matmul")]

            steps = [functools.partial(layer_step, layer, x, upstream) for layer in layers]
            reset = functools.partial(setattr, x, "grad", None)
            fft_times, matmul_times = interleaved_times(steps, [reset, reset], args.warmup, args.crossover_repeats)
            fft_ms, matmul_ms = quartiles_ms(fft_times)[1], quartiles_ms(matmul_times)[1]
            faster = "fft" if fft_ms < matmul_ms else "matmul"
            rows.append(CrossoverRow(n, k, fft_ms, matmul_ms, faster, choose_dft_path(n, k)))
            print(
                f"  crossover n={n:>7,} k={k:>3} fft {fft_ms:8.3f} ms  matmul {matmul_ms:8.3f} ms",
                file=sys.stderr,
                flush=True,
            )
            del layers, steps
    return rows


def format_number(value: float | None, digits: int = 1, suffix: str = "") -> str:
    """``value`` with ``digits`` decimals and ``suffix``, or ``"n/a"`` for ``None``."""
    return "n/a" if value is None else f"{value:,.{digits}f}{suffix}"


def head_table(rows: list[HeadRow]) -> str:
    """The markdown table of head rows."""
    lines = [
        "| n | head | path | trainable params | head MB (P+G+Adam) | step peak MB | fwd+bwd ms (median [q1, q3]) "
        "| speedup vs dense | head-memory reduction vs dense |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        if row.median_ms is None:
            timing = row.note
        else:
            timing = f"{row.median_ms:,.2f} [{row.q1_ms:,.2f}, {row.q3_ms:,.2f}]"
        peak = None if row.step_peak_bytes is None else row.step_peak_bytes / MB
        speedup = format_number(row.speedup_vs_dense, 1, "x")
        reduction = format_number(row.memory_reduction_vs_dense, 1, "x")
        lines.append(
            f"| {row.num_labels:,} | {row.head} | {row.path} | {row.trainable_params:,} "
            f"| {row.head_memory_bytes / MB:,.2f} | {format_number(peak)} | {timing} | {speedup} | {reduction} |"
        )
    return "\n".join(lines)


def crossover_table(rows: list[CrossoverRow]) -> str:
    """The markdown table ``n x k`` with both paths' times, the faster one and the current rule's pick."""
    ks = sorted({row.k for row in rows})
    lines = [
        "| n \\ k | " + " | ".join(str(k) for k in ks) + " |",
        "|---:|" + "---|" * len(ks),
    ]
    for n in sorted({row.num_labels for row in rows}):
        by_k = {row.k: row for row in rows if row.num_labels == n}
        cells = []
        for k in ks:
            row = by_k.get(k)
            if row is None:
                cells.append("-")
                continue
            mark = "" if row.faster == row.choose_dft_path else " (rule picks " + row.choose_dft_path + ")"
            cells.append(f"fft {row.fft_ms:.2f} / mm {row.matmul_ms:.2f} -> **{row.faster}**{mark}")
        lines.append(f"| {n:,} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def crossover_summary(rows: list[CrossoverRow]) -> list[str]:
    """Per ``n``: the ks where matmul wins and the smallest k from which fft wins at every larger k."""
    lines = []
    for n in sorted({row.num_labels for row in rows}):
        ordered = sorted((row for row in rows if row.num_labels == n), key=lambda row: row.k)
        matmul_ks = [row.k for row in ordered if row.faster == "matmul"]
        fft_from = None
        for index, row in enumerate(ordered):
            if all(later.faster == "fft" for later in ordered[index:]):
                fft_from = row.k
                break
        rule_fft_ks = [row.k for row in ordered if row.choose_dft_path == "fft"]
        lines.append(
            f"- n={n:,}: matmul faster at k in {matmul_ks or 'none'}; fft faster for every k >= "
            f"{fft_from if fft_from is not None else 'none measured'}; choose_dft_path picks fft at k in "
            f"{rule_fft_ks or 'none'}; "
            f"rule wrong at {sum(row.faster != row.choose_dft_path for row in ordered)} of {len(ordered)} k"
        )
    return lines


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default=None, help=f"label counts n, comma separated (default {FULL_SIZES}).")
    parser.add_argument("--repeats", type=int, default=None, help="timed steps per head (default 7, quick 3).")
    parser.add_argument("--warmup", type=int, default=3, help="untimed rounds before timing (default 3).")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads (default 1: on a shared 2-core machine a 2-thread GEMM waits at every "
        "barrier for a descheduled thread and its times scatter by 3-10x).",
    )
    parser.add_argument("--quick", action="store_true", help=f"smoke test: sizes {QUICK_SIZES}, fewer repeats.")
    parser.add_argument("--json", default=None, metavar="PATH", help="also write all rows and settings as JSON.")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--in-features", type=int, default=768, help="d, the encoder width (default 768).")
    parser.add_argument("--k", type=int, default=10, help="DFT guaranteed sparsity (default 10).")
    parser.add_argument("--slack-dims", type=int, default=25, help="slack columns of the extra DFT row (0: none).")
    parser.add_argument("--bottleneck-dim", type=int, default=32, help="r of the bottleneck baseline (default 32).")
    parser.add_argument("--positives", type=int, default=5, help="ones per row of the random target (default 5).")
    parser.add_argument(
        "--memory-fraction",
        type=float,
        default=0.6,
        help="skip the dense head when its fwd+bwd would need more than this share of MemAvailable (default 0.6).",
    )
    parser.add_argument("--skip-crossover", action="store_true", help="do not time the fft/matmul crossover grid.")
    args = parser.parse_args(argv)
    try:
        args.sizes = parse_sizes(args.sizes or (QUICK_SIZES if args.quick else FULL_SIZES))
    except ValueError as error:
        parser.error(str(error))
    if args.repeats is None:
        args.repeats = 3 if args.quick else 7
    args.crossover_repeats = max(args.repeats, 9)
    for name in ("repeats", "threads", "batch_size", "in_features", "k", "bottleneck_dim", "positives"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}.")
    if args.warmup < 0 or args.slack_dims < 0:
        parser.error("--warmup and --slack-dims must be >= 0.")
    if not 0 < args.memory_fraction <= 1:
        parser.error(f"--memory-fraction must be in (0, 1], got {args.memory_fraction}.")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the markdown tables, optionally write JSON."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(0)
    started = time.perf_counter()
    settings = {
        "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "batch_size": args.batch_size,
        "in_features": args.in_features,
        "k": args.k,
        "slack_dims": args.slack_dims,
        "bottleneck_dim": args.bottleneck_dim,
        "positives_per_row": args.positives,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "dtype": "float32",
    }

    head_rows: list[HeadRow] = []
    for num_labels in args.sizes:
        head_rows.extend(measure_heads(args, num_labels, generator))
    crossover_rows: list[CrossoverRow] = []
    if not args.skip_crossover:
        crossover_sizes = tuple(n for n in CROSSOVER_SIZES if n <= max(args.sizes))
        crossover_rows = measure_crossover(args, crossover_sizes or (min(args.sizes),), CROSSOVER_KS, generator)
    settings["wall_seconds"] = round(time.perf_counter() - started, 1)
    # ru_maxrss is in KiB on Linux: the high-water mark of the whole run, not of any one head.
    settings["process_peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / MB, 1)

    print(
        f"## Head forward+backward, d={args.in_features}, batch {args.batch_size}, fp32 CPU, "
        f"{settings['torch_threads']} torch threads, torch {settings['torch']}\n"
    )
    print(
        f"BCE-with-logits against a random multi-hot target ({args.positives} labels on per row); the features "
        f"require grad. Median of {args.repeats} steps after {args.warmup} warm-up steps. head MB = 16 bytes per "
        "trainable parameter (weights, grads, Adam m and v) + the cached G of the matmul path. step peak MB = "
        "measured peak of torch CPU allocations during one fwd+bwd above the level before it. The loss floor row "
        "has no head: it times only the BCE over (B, n) and its backward, the least any head can cost.\n"
    )
    print(head_table(head_rows))
    if crossover_rows:
        print(f"\n## DFT layer alone, fwd+bwd ms (input ({args.batch_size}, 2k+1)), fft vs matmul (mm)\n")
        print(crossover_table(crossover_rows))
        print()
        print("\n".join(crossover_summary(crossover_rows)))
    print(
        f"\nWall time {settings['wall_seconds']} s; process peak RSS {settings['process_peak_rss_mb']:,} MB.",
    )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(
                {
                    "settings": settings,
                    "heads": [asdict(row) for row in head_rows],
                    "crossover": [asdict(row) for row in crossover_rows],
                },
                handle,
                indent=2,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
