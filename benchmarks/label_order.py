"""Label orders on the circle: how many gold label sets the pure DFT layer can output under each order.

For each data set and order, the share of train / validation / test label sets (one per example) with at most
``2k`` cyclic sign changes, i.e. outputtable by ``G(n, k)`` without slack, for ``k`` in 3, 5, 10, 25 (those with
``2k + 1 <= n``), the mean sign changes per set, and the seconds to compute the order. Orders are computed from
the train split only. For reference, the row ``size <= k`` is the share of sets with at most ``k`` labels: the
sets every order guarantees.

Then a scaling run on synthetic data: ``n`` labels with power-law (Zipf) popularity and about 10^6 label
occurrences; each set is a few labels close together on a hidden circle (geometric gaps), label ids shuffled.
Each size runs in a fresh process, reporting the seconds of :func:`hf_dft_head.label_order.label_order` and the
process's peak resident memory (``ru_maxrss``) before and after it.

Run from the repository root (one thread: the machine is shared)::

    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python benchmarks/label_order.py
    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python benchmarks/label_order.py --quick   # skips n = 100,000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from hf_dft_head.argmax import LabelSets, from_csr, from_id_lists  # noqa: E402
from hf_dft_head.data import load_disaster_response, load_kaomoji  # noqa: E402
from hf_dft_head.label_order import (  # noqa: E402
    label_order,
    name_similarity,
    order_statistics,
    positions_from_tour,
    sign_change_counts,
)

KS = (3, 5, 10, 25)
SPLITS = ("train", "validation", "test")


def load_real(name: str) -> tuple[dict[str, LabelSets], list[str]]:
    """The bundled data set's splits as label sets, and the label names (vocabulary order = name order)."""
    data = {"disaster-response": load_disaster_response, "kaomoji": load_kaomoji}[name]()
    splits = {split: from_id_lists(data.dataset[split]["labels"], data.num_labels) for split in SPLITS}
    return splits, list(data.vocabulary.labels)


def orders_for(train: LabelSets, names: list[str], seed: int) -> dict[str, tuple[np.ndarray, float]]:
    """Every order compared, with the seconds it took: ``{label: (positions, seconds)}``."""
    n = train.num_labels
    recipes = {
        "name": lambda: label_order(train, n, "name"),
        "random": lambda: positions_from_tour(np.random.default_rng(seed).permutation(n)),
        "frequency": lambda: label_order(train, n, "frequency"),
        "spectral": lambda: label_order(train, n, "spectral"),
        "cooccurrence, no kicks": lambda: label_order(train, n, seed=seed, kicks=0),
        "cooccurrence (default)": lambda: label_order(train, n, seed=seed),
        "cooccurrence, 2000 kicks": lambda: label_order(train, n, seed=seed, kicks=2000),
        "cooccurrence, cosine": lambda: label_order(train, n, seed=seed, weighting="cosine"),
        "cooccurrence + names": lambda: label_order(train, n, seed=seed, similarity=name_similarity(names)),
    }
    out = {}
    for label, recipe in recipes.items():
        start = time.perf_counter()
        positions = recipe()
        out[label] = (positions, time.perf_counter() - start)
    return out


def real_table(name: str, seed: int) -> str:
    splits, names = load_real(name)
    n = splits["train"].num_labels
    ks = [k for k in KS if 2 * k + 1 <= n]
    header = ["order", "seconds"] + [f"{split[:5]} k={k}" for split in SPLITS for k in ks]
    header += [f"mean changes {split[:5]}" for split in SPLITS]
    lines = [f"### {name}: n = {n} labels, " + ", ".join(f"{len(splits[s]):,} {s}" for s in SPLITS), ""]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    sizes = [splits[split].sizes for split in SPLITS]
    cells = [f"{np.mean(s <= k):.3f}" for s in sizes for k in ks] + [""] * len(SPLITS)
    lines.append("| size <= k (any order) | | " + " | ".join(cells) + " |")
    for label, (positions, seconds) in orders_for(splits["train"], names, seed).items():
        stats = order_statistics(splits, positions, ks)
        cells = [f"{stats[split][f'share_k{k}']:.3f}" for split in SPLITS for k in ks]
        cells += [f"{stats[split]['mean_sign_changes']:.3f}" for split in SPLITS]
        lines.append(f"| {label} | {seconds:.2f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def synthetic_sets(num_labels: int, occurrences: int, seed: int) -> tuple[LabelSets, np.ndarray]:
    """Power-law sets near each other on a hidden circle; returns the sets and the hidden tour ``(n,)``."""
    rng = np.random.default_rng(seed)
    hidden = rng.permutation(num_labels)
    popularity = 1.0 / np.arange(1, num_labels + 1)
    sizes = 1 + rng.poisson(4, occurrences // 5 + 1)
    sizes = sizes[: np.searchsorted(np.cumsum(sizes), occurrences) + 1]
    anchors = rng.choice(num_labels, len(sizes), p=popularity / popularity.sum())
    # Offsets along the hidden circle: the anchor, then geometric gaps (strictly increasing, so no repeats).
    gaps = rng.geometric(0.5, int(sizes.sum()))
    indptr = np.r_[0, np.cumsum(sizes)]
    owner = np.repeat(np.arange(len(sizes)), sizes)
    steps = np.cumsum(gaps)
    steps -= np.repeat(steps[indptr[:-1]], sizes)  # 0 at each set's first label
    labels = hidden[(anchors[owner] + steps) % num_labels]
    return from_csr(indptr, labels, num_labels), hidden


def scaling_child(num_labels: int, occurrences: int, seed: int) -> None:
    """Runs in a fresh process: prints one JSON line with time, memory and sign-change statistics."""
    sets, hidden = synthetic_sets(num_labels, occurrences, seed)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    positions = label_order(sets, num_labels, seed=seed)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    frequency = np.bincount(sets.indices, minlength=num_labels)
    orders = {
        "name": np.arange(num_labels),
        "frequency": label_order(sets, num_labels, "frequency"),
        "cooccurrence": positions,
        "hidden circle": positions_from_tour(hidden),
    }
    result = {
        "n": num_labels,
        "sets": len(sets),
        "occurrences": int(len(sets.indices)),
        "labels_seen": int((frequency > 0).sum()),
        "seconds": seconds,
        "peak_rss_before_mib": before,
        "peak_rss_after_mib": after,
    }
    for label, order in orders.items():
        counts = sign_change_counts(sets, order)
        result[label] = [float(counts.mean())] + [float(np.mean(counts <= 2 * k)) for k in (3, 5, 10)]
    print(json.dumps(result))


def scaling_table(sizes: list[int], occurrences: int, seed: int) -> str:
    lines = [
        f"### Synthetic scaling: about {occurrences:,} label occurrences, power-law popularity, one fresh process each",
        "",
        "| n | sets | labels seen | seconds | peak RSS before / after (MiB) | mean changes: name / frequency / "
        "cooccurrence / hidden | share k=3: name / freq / cooc / hidden | share k=5: same |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for n in sizes:
        run = subprocess.run(
            [
                sys.executable,
                __file__,
                "--scaling-child",
                str(n),
                "--occurrences",
                str(occurrences),
                "--seed",
                str(seed),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        r = json.loads(run.stdout.strip().splitlines()[-1])
        orders = ("name", "frequency", "cooccurrence", "hidden circle")
        lines.append(
            f"| {r['n']:,} | {r['sets']:,} | {r['labels_seen']:,} | {r['seconds']:.1f} | "
            f"{r['peak_rss_before_mib']:.0f} / {r['peak_rss_after_mib']:.0f} | "
            + " / ".join(f"{r[o][0]:.2f}" for o in orders)
            + " | "
            + " / ".join(f"{r[o][1]:.3f}" for o in orders)
            + " | "
            + " / ".join(f"{r[o][2]:.3f}" for o in orders)
            + " |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="scaling run at n = 10,000 only")
    parser.add_argument("--datasets", nargs="*", default=["disaster-response", "kaomoji"])
    parser.add_argument("--scaling", nargs="*", type=int, default=None, help="label counts of the scaling run")
    parser.add_argument("--occurrences", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scaling-child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.scaling_child is not None:
        scaling_child(args.scaling_child, args.occurrences, args.seed)
        return
    for name in args.datasets:
        print(real_table(name, args.seed), "\n", flush=True)
    sizes = args.scaling if args.scaling is not None else ([10_000] if args.quick else [10_000, 100_000])
    if sizes:
        print(scaling_table(sizes, args.occurrences, args.seed), flush=True)


if __name__ == "__main__":
    main()
