"""Wall time of an audit's verification in one process and shared over ``accelerate launch`` processes.

The head is the real dense head of ``tests/data/dense_head_radius_hang.npz`` (595 labels x 384 features); the label
sets are its real 9-label gold set and ``--sets - 1`` seeded random sets of 1-10 labels. ``audit.audit_head`` runs
them (radii by LP, as ``hf-dft audit`` does) inside ``sharding.across_launched_processes()``, as the command does::

    OMP_NUM_THREADS=1 python benchmarks/sharded_verify.py --workers 1
    OMP_NUM_THREADS=1 python benchmarks/sharded_verify.py              # --workers default: the available cores
    ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 --num_machines 1 --mixed_precision no \\
        --dynamo_backend no benchmarks/sharded_verify.py

The main process prints ``RESULT {...}``: processes, workers per process, sets, seconds, verdict counts and the
sha256 of the report (equal across runs: the verdicts do not depend on how they were shared out).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

import numpy as np

from hf_dft_head import audit, sharding
from hf_dft_head.sigmoid_head import SigmoidHead

CASE = Path(__file__).resolve().parents[1] / "tests" / "data" / "dense_head_radius_hang.npz"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", type=int, default=200, help="label sets to verify")
    parser.add_argument("--workers", type=int, default=None, help="LP worker processes per process")
    args = parser.parse_args()
    case = np.load(CASE)
    weight, bias = case["weight"], case["bias"]
    head = SigmoidHead(
        weight=weight, bias=bias, kind="dense", space="features", label_names=[str(i) for i in range(len(bias))]
    )
    generator = np.random.default_rng(0)
    sets = [tuple(int(i) for i in case["label_set"])]
    while len(sets) < args.sets:
        size = int(generator.integers(1, 11))
        sets.append(tuple(sorted(generator.choice(len(bias), size=size, replace=False).tolist())))
    with sharding.across_launched_processes() as processes:
        start = time.perf_counter()
        report = audit.audit_head(head, sets, None, audit.VerifierOptions(workers=args.workers), progress=False)
        seconds = time.perf_counter() - start
        workers = audit.resolve_workers(args.workers)  # inside the block: the cores are shared out there
    if processes.is_main:
        digest = hashlib.sha256(json.dumps(report, sort_keys=True, default=str).encode()).hexdigest()
        gold = report["gold"]
        counts = {key: gold[key] for key in ("distinct_sets", "argmaxable", "unargmaxable", "undecided")}
        print(
            "RESULT "
            + json.dumps(
                {
                    "processes": processes.count,
                    "workers_per_process": workers,
                    "sets": len(sets),
                    "seconds": round(seconds, 2),
                    **counts,
                    "report_sha256": digest,
                }
            )
        )


if __name__ == "__main__":
    main()
