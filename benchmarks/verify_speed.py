"""Speed of the argmaxability engine against the paper's full LP, and of the DFT rule.

Three measurements, printed as one markdown table:

1. Dense head: n = 5,000 labels, d = 384, rows ``w_i ~ N(0, I / d)``, biases ``b_i ~ N(-0.2, 0.1^2)``
   (negative, as in trained heads; with zero bias nearly every set is unargmaxable). ``--num-sets``
   label sets drawn with sizes uniform in 1..20 and labels uniform. Each set is decided twice:
   by the full LP (one HiGHS LP over all n rows per set, run to optimality, as in the paper) and
   by the engine (subspace witness search, min-norm-point certificates, constraint generation).
   The script asserts identical statuses and epsilon flags and reports per-set times.
2. Trained head: a low-rank logistic head on the yeast data shipped with ``river`` (103 features,
   14 labels): features standardised and projected on their top ``--yeast-rank`` principal
   components, then one scikit-learn logistic regression per label. The head is decided in its
   own (rank-dim) input space on the distinct gold label sets.
3. The sign-change rule's throughput on 10^6 label sets (sizes 1..20) at n = 100,000, in label-id
   order and through a random circle order, vectorised over a CSR layout.

Per-set times are measured inside the worker processes (wall clock and CPU), BLAS limited to one
thread per process; the two approaches alternate on blocks of sets so that both see the same load.
Run from the repository root::

    PYTHONPATH=. .venv/bin/python benchmarks/verify_speed.py            # full run (the full LP takes long)
    PYTHONPATH=. .venv/bin/python benchmarks/verify_speed.py --quick    # small sizes, a minute or so
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import os
import sys
import time

import numpy as np
from scipy.optimize import linprog
from tqdm.auto import tqdm

from hf_dft_head.argmax import from_csr, rule_argmaxable, verify_label_sets
from hf_dft_head.argmax.lp import _RowLP


def draw_sets(rng: np.random.Generator, num_labels: int, num_sets: int, max_size: int = 20) -> list[list[int]]:
    """``num_sets`` label sets with sizes uniform in 1..max_size and labels uniform without replacement."""
    return [
        sorted(rng.choice(num_labels, size, replace=False).tolist()) for size in rng.integers(1, max_size + 1, num_sets)
    ]


def compare(name: str, weight, bias, sets, *, jobs: int, skip_full: bool, block: int = 16) -> dict:
    """Decide ``sets`` with the engine and with the full LP; assert identical verdicts; collect times.

    The two approaches alternate on blocks of ``block`` sets, so that both see the same load on the
    machine; per-set times are taken inside the worker processes.
    """
    engine, full = [], []
    engine_wall = full_wall = 0.0
    bar = tqdm(total=len(sets), desc=name, unit="set")
    for start in range(0, len(sets), block):
        chunk = sets[start : start + block]
        tick = time.perf_counter()
        engine += verify_label_sets(weight, bias, chunk, n_jobs=jobs, progress=False).verdicts
        engine_wall += time.perf_counter() - tick
        if not skip_full:
            tick = time.perf_counter()
            full += verify_label_sets(
                weight, bias, chunk, constraint_generation=False, n_jobs=jobs, progress=False
            ).verdicts
            full_wall += time.perf_counter() - tick
        bar.update(len(chunk))
    bar.close()
    statuses = [v.status for v in engine]
    row = {
        "case": name,
        "n": weight.shape[0],
        "d": weight.shape[1],
        "sets": len(sets),
        "counts": {s: statuses.count(s) for s in ("argmaxable", "unargmaxable", "undecided")},
        "epsilon_false": sum(v.status == "argmaxable" and v.epsilon_argmaxable is False for v in engine),
        "engine_median": float(np.median([v.seconds for v in engine])),
        "engine_cpu_median": float(np.median([v.cpu_seconds for v in engine])),
        "engine_total": engine_wall,
    }
    if skip_full:
        return row
    mismatches = [
        (i, a.status, b.status, a.epsilon_argmaxable, b.epsilon_argmaxable)
        for i, (a, b) in enumerate(zip(engine, full))
        if a.status != b.status or a.epsilon_argmaxable != b.epsilon_argmaxable
    ]
    assert not mismatches, f"{name}: engine and full LP disagree on (set, statuses, epsilon flags) {mismatches[:5]}"
    row["full_total"] = full_wall
    groups = {}
    for a, b in zip(engine, full):
        key = a.status if a.status != "argmaxable" else f"argmaxable, epsilon {a.epsilon_argmaxable}"
        groups.setdefault(key, []).append((a.cpu_seconds, b.cpu_seconds))
    row["groups"] = {
        key: (len(pairs), float(np.median([f for _, f in pairs])), float(np.median([e for e, _ in pairs])))
        for key, pairs in sorted(groups.items())
    }
    row["full_median"] = float(np.median([v.seconds for v in full]))
    row["full_cpu_median"] = float(np.median([v.cpu_seconds for v in full]))
    row["ratio"] = row["full_median"] / row["engine_median"]
    row["cpu_ratio"] = row["full_cpu_median"] / row["engine_cpu_median"]
    return row


def yeast_head(rank: int, seed: int):
    """Low-rank logistic head on yeast: (W (14, rank), b (14,), distinct gold label sets)."""
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    spec = importlib.util.find_spec("river")
    if spec is None or spec.origin is None:
        raise SystemExit("the yeast case needs the `river` package (pip install --no-deps river)")
    path = os.path.join(os.path.dirname(spec.origin), "datasets", "yeast.csv.gz")
    with gzip.open(path, "rt") as handle:
        header = handle.readline().strip().split(",")
        table = np.array([line.strip().split(",") for line in handle])
    label_columns = [j for j, name in enumerate(header) if not name.startswith("Att")]
    feature_columns = [j for j, name in enumerate(header) if name.startswith("Att")]
    features = table[:, feature_columns].astype(np.float64)
    labels = np.isin(np.char.lower(table[:, label_columns]), ("1", "true")).astype(int)
    hidden = PCA(n_components=rank, random_state=seed).fit_transform(StandardScaler().fit_transform(features))
    weight = np.zeros((labels.shape[1], rank))
    bias = np.zeros(labels.shape[1])
    for j in range(labels.shape[1]):
        model = LogisticRegression(C=1.0, max_iter=2000).fit(hidden, labels[:, j])
        weight[j], bias[j] = model.coef_[0], model.intercept_[0]
    gold = sorted({tuple(np.flatnonzero(row).tolist()) for row in labels})
    return weight, bias, [list(s) for s in gold]


def rule_throughput(num_labels: int, num_sets: int, k: int, seed: int) -> dict:
    """Sets per second of the vectorised rule, in id order and through a random circle order."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 21, num_sets)
    owner = np.repeat(np.arange(num_sets), sizes)
    # Distinct ids inside each set (drop the rare repeats), sorted: the CSR layout the engine stores.
    keys = np.unique(owner * np.int64(num_labels) + rng.integers(0, num_labels, len(owner)))
    owner, ids = keys // num_labels, keys % num_labels
    indptr = np.zeros(num_sets + 1, dtype=np.int64)
    np.cumsum(np.bincount(owner, minlength=num_sets), out=indptr[1:])
    start = time.perf_counter()
    sets = from_csr(indptr, ids, num_labels)
    validate = time.perf_counter() - start
    order = rng.permutation(num_labels)
    timings = {}
    for name, label_order in (("id order", None), ("permuted order", order)):
        best = np.inf
        for _ in range(3):
            start = time.perf_counter()
            accepted = rule_argmaxable(sets, k, label_order=label_order)
            best = min(best, time.perf_counter() - start)
        timings[name] = (best, float(accepted.mean()))
    return {"n": num_labels, "sets": num_sets, "labels": len(ids), "validate": validate, "timings": timings}


def small_lp_overhead(weight, bias, sets, repeats: int) -> tuple[float, float]:
    """Median ms per Chebyshev LP over all rows: highspy model vs scipy.optimize.linprog(method="highs")."""
    norms = np.linalg.norm(weight, axis=1)
    n, m = weight.shape
    highs_times, scipy_times = [], []
    for labels in sets[:repeats]:
        sigma = -np.ones(n)
        sigma[labels] = 1.0
        rows = sigma[:, None] * weight / norms[:, None]
        lower = -sigma * bias / norms
        start = time.perf_counter()
        lp = _RowLP(m, 1.0, None)
        lp.add_rows(rows, lower)
        lp.solve()
        highs_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        linprog(
            np.r_[np.zeros(m), -1.0],
            A_ub=np.c_[-rows, np.ones(n)],
            b_ub=-lower,
            bounds=[(-1, 1)] * m + [(None, 1.0)],
            method="highs",
        )
        scipy_times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(highs_times)), 1e3 * float(np.median(scipy_times))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-sets", type=int, default=200, help="label sets for the dense head (default 200)")
    parser.add_argument("--num-labels", type=int, default=5000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--yeast-rank", type=int, default=6)
    parser.add_argument("--rule-labels", type=int, default=100_000)
    parser.add_argument("--rule-sets", type=int, default=1_000_000)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="worker processes for both approaches")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-full", action="store_true", help="time the engine only")
    parser.add_argument("--quick", action="store_true", help="n=1000, d=64, 40 sets, 10^5 rule sets")
    args = parser.parse_args(argv)
    if args.quick:
        args.num_sets, args.num_labels, args.dim, args.rule_sets = 40, 1000, 64, 100_000

    try:  # one BLAS thread in this process, as in the workers
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except ImportError:
        pass

    rng = np.random.default_rng(args.seed)
    n, d = args.num_labels, args.dim
    weight = rng.standard_normal((n, d)) / np.sqrt(d)
    bias = -0.2 + 0.1 * rng.standard_normal(n)
    rows = [
        compare(
            "dense Gaussian", weight, bias, draw_sets(rng, n, args.num_sets), jobs=args.jobs, skip_full=args.skip_full
        )
    ]

    y_weight, y_bias, gold = yeast_head(args.yeast_rank, args.seed)
    rows.append(
        compare(
            f"yeast logistic, rank {args.yeast_rank}", y_weight, y_bias, gold, jobs=args.jobs, skip_full=args.skip_full
        )
    )
    highs_ms, scipy_ms = small_lp_overhead(y_weight, y_bias, gold, repeats=100)
    rule = rule_throughput(args.rule_labels, args.rule_sets, k=5, seed=args.seed)

    print()
    print(f"Python {sys.version.split()[0]}, numpy {np.__version__}, {os.cpu_count()} CPUs, --jobs {args.jobs}")
    print()
    print(
        "| head | n | d | sets | argmaxable / unargmaxable / undecided | argmaxable, not eps | "
        "full LP median s/set (wall / CPU) | engine median s/set (wall / CPU) | speed-up (wall / CPU) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        c = r["counts"]
        full = f"{r['full_median']:.4f} / {r['full_cpu_median']:.4f}" if "full_median" in r else "-"
        ratio = f"{r['ratio']:.1f}x / {r['cpu_ratio']:.1f}x" if "ratio" in r else "-"
        print(
            f"| {r['case']} | {r['n']} | {r['d']} | {r['sets']} | {c['argmaxable']} / {c['unargmaxable']} / "
            f"{c['undecided']} | {r['epsilon_false']} | {full} | "
            f"{r['engine_median']:.4f} / {r['engine_cpu_median']:.4f} | {ratio} |"
        )
    print()
    print("| head | verdict group | sets | full LP median CPU s/set | engine median CPU s/set | speed-up |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        for key, (count, full_cpu, engine_cpu) in r.get("groups", {}).items():
            print(
                f"| {r['case']} | {key} | {count} | {full_cpu:.4f} | {engine_cpu:.4f} | "
                f"{full_cpu / max(engine_cpu, 1e-12):.1f}x |"
            )
    print()
    print("| DFT rule, k = 5 | n | sets | labels | time s | sets/s | share argmaxable |")
    print("|---|---|---|---|---|---|---|")
    for name, (seconds, share) in rule["timings"].items():
        print(
            f"| {name} | {rule['n']} | {rule['sets']} | {rule['labels']} | {seconds:.3f} | "
            f"{rule['sets'] / seconds:.3g} | {share:.3f} |"
        )
    print(f"| (validating the CSR batch, once) | {rule['n']} | {rule['sets']} | | {rule['validate']:.3f} | | |")
    print()
    print(
        f"Small LP (yeast head, {y_weight.shape[0]} rows x {y_weight.shape[1] + 1} columns), median per solve: "
        f"highspy {highs_ms:.2f} ms, scipy.optimize.linprog(method='highs') {scipy_ms:.2f} ms"
    )
    for r in rows:
        if "full_total" in r:
            print(f"{r['case']}: total wall {r['full_total']:.1f} s (full LP) vs {r['engine_total']:.1f} s (engine)")


if __name__ == "__main__":
    main()
