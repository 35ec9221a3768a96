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
* ``audit, no radii``: ``audit.audit_head(..., VerifierOptions(radius_sample=0))`` (verdicts, summaries by size);
* ``audit, default radii``: ``audit.audit_head`` with the default radius sample (all rule-decided argmaxable sets
  while sets x n <= 250,000, else a seeded sample of 250,000 // n sets): what ``hf-dft audit`` / ``certify`` run.

With ``--checkpoint-level`` two more fresh processes per size: one writes a checkpoint (a one-layer BERT of hidden
size 384 and the same DFT head, with its tokenizer) and a JSONL split of the gold sets (label names), the other runs
``audit.audit_checkpoint`` on them with the default options (load the model and the split, predict batch by batch
with the streaming quality metrics, verify the distinct gold and predicted sets, radii for the default sample).

Run from the repository root (one thread, as the brief asks)::

    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python benchmarks/certify_scale.py
    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python benchmarks/certify_scale.py --sizes 10000 100000
    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python benchmarks/certify_scale.py --checkpoint-level
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from transformers import BertConfig, BertModel, BertTokenizerFast

from hf_dft_head import DFTForMultiLabelClassification, audit
from hf_dft_head.argmax import verify_label_sets
from hf_dft_head.layers import DFTHead
from hf_dft_head.sigmoid_head import SigmoidHead


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
    sigmoid_head = SigmoidHead(
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
        options = audit.VerifierOptions(radius_sample=sample)
        report = audit.audit_head(sigmoid_head, gold, predicted, options, progress=False)
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


WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"word{i}" for i in range(200)]


def write_checkpoint(folder: Path, num_labels: int, count: int, k: int, dim: int) -> dict:
    """A one-layer BERT (hidden ``dim``) + pure DFT head over ``num_labels`` labels, saved with its tokenizer, and a
    JSONL split of ``count`` texts with the synthetic gold sets (label names)."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    start = time.perf_counter()
    encoder = BertModel(
        BertConfig(
            vocab_size=len(WORDS), hidden_size=dim, num_hidden_layers=1, num_attention_heads=6, intermediate_size=dim
        )
    )
    order = np.random.default_rng(1).permutation(num_labels)
    names = [f"label{i}" for i in range(num_labels)]
    model = DFTForMultiLabelClassification.from_encoder(
        encoder, id2label=dict(enumerate(names)), k=k, label_order=order.tolist()
    )
    model.eval().save_pretrained(folder / "checkpoint")
    BertTokenizerFast(vocab={word: i for i, word in enumerate(WORDS)}).save_pretrained(folder / "checkpoint")
    generator = np.random.default_rng(4)
    with open(folder / "test.jsonl", "w") as handle:
        for label_set in synthetic_label_sets(num_labels, count, seed=2):
            text = " ".join(generator.choice(WORDS[5:], size=8))
            handle.write(json.dumps({"text": text, "labels": [names[i] for i in label_set]}) + "\n")
    return {"n": num_labels, "rows": [("write checkpoint + data", time.perf_counter() - start, peak_rss_mb(), "")]}


def audit_checkpoint_level(folder: Path) -> dict:
    """``audit.audit_checkpoint`` on the written checkpoint and split (what ``hf-dft audit`` runs), default options."""
    torch.set_num_threads(1)
    start = time.perf_counter()
    report = audit.audit_checkpoint(
        folder / "checkpoint", audit.dataset_spec(str(folder / "test.jsonl"), "test"), progress=False
    )
    radius = report["verifier"]["radius"]
    note = (
        f"gold {report['gold']['argmaxable']}/{report['gold']['distinct_sets']} argmaxable, "
        f"{report['gold']['undecided']} undecided; predicted {report['predicted']['distinct_sets']} distinct; "
        f"radii {radius['computed_for']} ({radius['sample_size']} of {radius['rule_decided_argmaxable_sets']}); "
        f"p@1 {report['quality']['p@1']:.4f}"
    )
    return {"rows": [("audit_checkpoint (load, predict, verify)", time.perf_counter() - start, peak_rss_mb(), note)]}


def child(arguments: list[str]) -> dict:
    output = subprocess.run([sys.executable, __file__, *arguments], capture_output=True, text=True)
    if output.returncode:
        raise RuntimeError(f"{arguments} failed:\n{output.stderr[-3000:]}")
    return json.loads(next(line for line in output.stdout.splitlines() if line.startswith("RESULT "))[7:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--sets", type=int, default=1000, help="gold sets (and as many predicted sets)")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument(
        "--checkpoint-level",
        action="store_true",
        help="also write a checkpoint (one-layer BERT + the DFT head) and a JSONL split, and time audit_checkpoint",
    )
    parser.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)  # child: one size
    parser.add_argument("--write", default=None, help=argparse.SUPPRESS)  # child: write a checkpoint there
    parser.add_argument("--audit", default=None, help=argparse.SUPPRESS)  # child: audit the checkpoint there
    args = parser.parse_args()
    if args.one is not None:
        print("RESULT " + json.dumps(run_one(args.one, args.sets, args.k, args.dim)))
        return
    if args.write is not None:
        print("RESULT " + json.dumps(write_checkpoint(Path(args.write), args.sizes[0], args.sets, args.k, args.dim)))
        return
    if args.audit is not None:
        print("RESULT " + json.dumps(audit_checkpoint_level(Path(args.audit))))
        return
    print("| n | phase (each size in fresh processes) | wall s | peak RSS MB | result |\n|---|---|---|---|---|")
    common = ["--sets", str(args.sets), "--k", str(args.k), "--dim", str(args.dim)]
    for size in args.sizes:
        rows = child(["--one", str(size), *common])["rows"]
        if args.checkpoint_level:
            with tempfile.TemporaryDirectory(prefix="certify_scale_") as scratch:
                rows += child(["--write", scratch, "--sizes", str(size), *common])["rows"]
                rows += child(["--audit", scratch, *common])["rows"]
        for phase, seconds, rss, note in rows:
            print(f"| {size:,} | {phase} | {seconds:.2f} | {rss:.0f} | {note} |", flush=True)


if __name__ == "__main__":
    main()
