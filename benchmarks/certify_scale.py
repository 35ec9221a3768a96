"""Rule-decided verification of a pure DFT head at 10k, 100k and 1M labels: wall time and peak RSS.

The head: ``DFTHead(384, n, k=10)`` (random ``P``, a random circle order) on random 384-dim features, no slack,
so the sign-change rule decides every set. The data: ``--sets`` synthetic gold label sets with power-law label
frequencies (Zipf exponent 1.1 over a shuffled vocabulary), power-law sizes in 1..30 (``P(s) ~ s^-1.5``) and
co-occurrence structure (most labels of a set come from one of 50 topics, each a pool of 200 labels drawn from
the same power law); predicted sets are the top-5 labels of the head on ``--sets`` random feature vectors, taken
batch by batch with ``torch.topk`` (no ``(N, n)`` logit matrix is held).

Each size runs in a fresh process (so its peak RSS is its own) and reports, cumulatively:

* ``build``: the head, its effective matrix ``G[order]`` (n x 21) and the label sets;
* ``engine``: ``verify_label_sets(..., rule_only=True)`` on the distinct gold and predicted sets (the rule's verdicts;
  the "no" proven by Farkas certificates on 2k + 2 rows);
* ``audit, no radii``: ``audit.audit_head(..., radius_sample=0)`` (verdicts, summaries by size);
* ``audit, default radii``: ``audit.audit_head`` with the default radius sample (all rule-decided argmaxable sets
  while sets x n <= 250,000, else a seeded sample of 250,000 // n sets): what ``hf-dft audit`` / ``certify`` run.

Run from the repository root (one thread, as the brief asks)::

    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python benchmarks/certify_scale.py
    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python benchmarks/certify_scale.py --sizes 10000 100000
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np
import torch

from hf_dft_head import audit
from hf_dft_head.argmax import verify_label_sets
from hf_dft_head.layers import DFTHead


def synthetic_label_sets(num_labels: int, count: int, seed: int) -> list[tuple[int, ...]]:
    """``count`` label sets: power-law label frequencies and sizes in 1..30, most labels from one of 50 topics."""
    generator = np.random.default_rng(seed)
    ranks = generator.permutation(num_labels)  # label ranks[j] is the j-th most frequent
    weights = 1.0 / np.arange(1, num_labels + 1) ** 1.1
    weights /= weights.sum()
    topics = [np.unique(ranks[generator.choice(num_labels, 200, p=weights)]) for _ in range(50)]
    sizes = np.arange(1, 31)
    size_weights = sizes**-1.5 / np.sum(sizes**-1.5)
    sets = []
    for _ in range(count):
        size = int(generator.choice(sizes, p=size_weights))
        topic = topics[int(generator.integers(len(topics)))]
        from_topic = min(len(topic), int(round(0.7 * size)))
        labels = set(generator.choice(topic, from_topic, replace=False).tolist())
        while len(labels) < size:
            labels.add(int(ranks[generator.choice(num_labels, p=weights)]))
        sets.append(tuple(sorted(labels)))
    return sets


def predicted_top_sets(head: DFTHead, count: int, dim: int, seed: int, top: int = 5, batch: int = 32) -> list:
    """Top-``top`` labels of the head on ``count`` random feature vectors, batch by batch (``(batch, n)`` logits)."""
    generator = torch.Generator().manual_seed(seed)
    sets = []
    with torch.no_grad():
        for start in range(0, count, batch):
            features = torch.randn(min(batch, count - start), dim, generator=generator)
            ids = torch.topk(head(features), top, dim=1).indices
            sets.extend(tuple(sorted(row)) for row in ids.tolist())
    return sets


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_one(num_labels: int, count: int, k: int, dim: int) -> dict:
    """Everything for one size, in this process; returns the rows of the table."""
    torch.set_num_threads(1)
    rows = []
    start = time.perf_counter()
    torch.manual_seed(0)
    order = np.random.default_rng(1).permutation(num_labels)
    head = DFTHead(dim, num_labels, k, label_order=order).eval()
    weight, bias = head.effective_head()
    sigmoid_head = audit.SigmoidHead(
        weight=weight,
        bias=bias,
        kind="dft",
        space="x = P h + c",
        dft_k=k,
        label_order=order,
        label_names=[f"LABEL_{i}" for i in range(num_labels)],
    )
    gold = synthetic_label_sets(num_labels, count, seed=2)
    predicted = predicted_top_sets(head, count, dim, seed=3)
    distinct = sorted(set(gold) | set(predicted), key=lambda s: (len(s), s))
    rows.append(("build", time.perf_counter() - start, peak_rss_mb(), f"{len(distinct)} distinct sets"))

    start = time.perf_counter()
    result = verify_label_sets(
        weight, bias, distinct, dft_k=k, label_order=order, rule_only=True, dtype="float32", progress=False
    )
    counts = result.counts()
    methods = {v.method for v in result.verdicts}
    rows.append(
        (
            "engine (rule)",
            time.perf_counter() - start,
            peak_rss_mb(),
            f"{counts['argmaxable']} argmaxable, {counts['unargmaxable']} unargmaxable, "
            f"{counts['undecided']} undecided; methods {sorted(methods)}",
        )
    )
    for name, sample in (("audit, no radii", 0), ("audit, default radii", None)):
        start = time.perf_counter()
        report = audit.audit_head(sigmoid_head, gold, predicted, radius_sample=sample, progress=False)
        radius = report["verifier"]["radius"]
        rows.append(
            (
                name,
                time.perf_counter() - start,
                peak_rss_mb(),
                f"gold {report['gold']['argmaxable']}/{report['gold']['distinct_sets']} argmaxable; radii "
                f"{radius['computed_for']} ({radius['sample_size']} of {radius['rule_decided_argmaxable_sets']})",
            )
        )
    return {"n": num_labels, "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--sets", type=int, default=1000, help="gold sets (and as many predicted sets)")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)  # child: one size
    args = parser.parse_args()
    if args.one is not None:
        print("RESULT " + json.dumps(run_one(args.one, args.sets, args.k, args.dim)))
        return
    print("| n | phase (cumulative peak RSS) | wall s | peak RSS MB | result |\n|---|---|---|---|---|")
    for size in args.sizes:
        command = [sys.executable, __file__, "--one", str(size), "--sets", str(args.sets), "--k", str(args.k)]
        output = subprocess.run(command + ["--dim", str(args.dim)], capture_output=True, text=True, check=True)
        result = json.loads(next(line for line in output.stdout.splitlines() if line.startswith("RESULT "))[7:])
        for phase, seconds, rss, note in result["rows"]:
            print(f"| {size:,} | {phase} | {seconds:.2f} | {rss:.0f} | {note} |", flush=True)


if __name__ == "__main__":
    main()
