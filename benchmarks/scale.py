"""Extreme label counts end to end: every phase of the product at 10k, 100k and 1M labels, wall time and peak RSS.

The data: :func:`write_synthetic_dataset` writes a folder of JSON lines (``train.jsonl``, ``validation.jsonl``,
``test.jsonl``; ``{"text": ..., "labels": [label names]}``), the "list of names" format ``hf-dft train --data-files``
reads. Its label sets are realistic for extreme classification:

* power-law label frequencies: labels sit in topics of 100 (``n / 100`` topics); a set picks a topic (Zipf
  exponent 0.5 over topics) and draws most of its labels from it by rank (Zipf exponent 1.1), the rest from a
  random topic -- so labels co-occur within a topic and a few labels are very frequent;
* set sizes 1..30 with ``P(s) ~ s^-1.5`` (mean 4.3 before coverage);
* every label occurs in train at least once (the product builds the vocabulary from the train split): the train
  file is ``--train-examples`` drawn rows -- the rows trained on (``--max-train-samples``), so their label sets have
  the same distribution at every n -- followed by cover rows holding the labels no drawn row holds, up to 30 of one
  topic per row (about n / 30 rows at n = 1M). The cover rows are read, labelled and counted in the vocabulary
  (the ``load`` phase) but neither featurised nor trained on;
* short texts: two topic words, the words of up to four of the set's labels, one noise word (pseudo-words from
  syllables), truncated to 16 tokens by ``--max-length 16``.

The phases, each in its own process (its wall time and peak RSS, read with ``os.wait4``, are its own; the peak is
the largest RSS of the process and the children it waited for), on a fresh ``datasets`` cache per size:

1. ``load``: ``hf_dft_head.data.load_data`` + ``label_set_statistics`` (read, label names -> ids, vocabulary);
2. ``features``: the bundled all-MiniLM-L6-v2 cut to one layer, ``encoder_features.compute_encoder_features`` on the
   train/validation/test rows train will use (fills the ``datasets`` cache ``hf-dft train`` then reads);
3. ``train``: ``hf-dft train --freeze-encoder --encoder-layers 1 --max-length 16 --epochs 1`` per head (reads the
   cached data and features, one epoch, evaluation on validation, final validation + test evaluation);
4. ``evaluate``: ``hf-dft evaluate --split test`` (P@k, R@k, F1@k, nDCG@k, micro/macro-F1);
5. ``certify``: ``hf-dft certify --split test`` (audit of the distinct gold and predicted test sets, the certificate,
   its verification through remote code in a second process);
6. ``predict``: ``hf-dft predict --input test.jsonl`` (JSON lines).

Heads: DFT (k = 10, pure: the rule decides its certificate) at every size; bottleneck and dense where their
``weights + gradients + Adam`` fit under ``--dense-limit-gb`` (the dense head's requirement at every size is printed).
A phase that runs past ``--phase-timeout`` is reported as such (LP-decided certification of a dense head at 100k
labels is the usual one).

Run from the repository root (one thread, as on a shared machine)::

    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python benchmarks/scale.py --labels 10000 100000
    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python benchmarks/scale.py --labels 1000000 --heads dft
    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python benchmarks/scale.py --quick   # 10k labels, small data, DFT only
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "ta", "vi", "so", "pe", "du", "ga", "fi", "ho", "ze", "bu", "ri"]
MAX_SET_SIZE = 30
LABELS_PER_TOPIC = 100


def pseudo_word(index: int, length: int = 3) -> str:
    """A pronounceable word for ``index`` (base-16 digits as syllables): the tokenizer splits it into a few pieces."""
    syllables = []
    for _ in range(length):
        syllables.append(SYLLABLES[index % len(SYLLABLES)])
        index //= len(SYLLABLES)
    return "".join(syllables)


def label_name(label: int) -> str:
    """Label names sort like their ids (``L0000042``), so the product's name-ordered vocabulary keeps the ids."""
    return f"L{label:07d}"


def _zipf(size: int, exponent: float) -> np.ndarray:
    weights = 1.0 / np.arange(1, size + 1) ** exponent
    return weights / weights.sum()


def synthetic_label_sets(
    num_labels: int, count: int, generator: np.random.Generator
) -> tuple[list[list[int]], np.ndarray]:
    """``count`` label sets (sorted id lists) and the topic of each, ``(count,)``; see the module docstring.

    Label ``j`` is in topic ``j % topics`` with rank ``j // topics`` inside it, so frequent labels are spread over
    the id range (the name order is not the frequency order).
    """
    topics = max(1, num_labels // LABELS_PER_TOPIC)
    per_topic = -(-num_labels // topics)
    sizes = np.arange(1, MAX_SET_SIZE + 1)
    set_sizes = generator.choice(sizes, size=count, p=_zipf(MAX_SET_SIZE, 1.5))
    set_topics = generator.choice(topics, size=count, p=_zipf(topics, 0.5))
    rank_weights = _zipf(per_topic, 1.1)
    total = int(set_sizes.sum())
    # Every slot draws a rank inside a topic; 80% of the slots use the set's topic, the rest a random one.
    ranks = generator.choice(per_topic, size=total, p=rank_weights)
    owner = np.repeat(np.arange(count), set_sizes)
    slot_topics = np.where(generator.random(total) < 0.8, set_topics[owner], generator.integers(topics, size=total))
    labels = ranks * topics + slot_topics
    labels = np.where(labels < num_labels, labels, slot_topics)  # the last topic row may be short
    bounds = np.concatenate([[0], np.cumsum(set_sizes)])
    sets = [sorted(set(labels[bounds[i] : bounds[i + 1]].tolist())) for i in range(count)]
    return sets, set_topics


def cover_rows(sets: list[list[int]], num_labels: int) -> tuple[list[list[int]], np.ndarray]:
    """Rows that hold every label no set of ``sets`` holds, and the topic of each, ``(rows,)``.

    The missing labels are grouped by topic and packed ``MAX_SET_SIZE`` to a row (a topic's labels are ids
    ``t, t + topics, ...``), so at n = 1M about n / 30 rows carry the vocabulary instead of n / 2.
    """
    seen = np.zeros(num_labels, dtype=bool)
    for label_set in sets:
        seen[label_set] = True
    missing = np.flatnonzero(~seen)
    topics = max(1, num_labels // LABELS_PER_TOPIC)
    missing = missing[np.argsort(missing % topics, kind="stable")]  # by topic, then by id
    missing_topics = missing % topics
    rows, row_topics = [], []
    start = 0
    while start < len(missing):
        stop = min(start + MAX_SET_SIZE, len(missing))
        stop = start + int(np.sum(missing_topics[start:stop] == missing_topics[start]))  # one topic per row
        rows.append(missing[start:stop].tolist())
        row_topics.append(int(missing_topics[start]))
        start = stop
    return rows, np.asarray(row_topics, dtype=np.int64)


def synthetic_texts(sets: list[list[int]], set_topics: np.ndarray, generator: np.random.Generator) -> list[str]:
    """Short texts: two topic words, the words of up to four labels of the set, one noise word."""
    texts = []
    noise = generator.integers(4096, size=len(sets))
    for row, label_set in enumerate(sets):
        topic = int(set_topics[row])
        shown = label_set if len(label_set) <= 4 else [label_set[i] for i in generator.choice(len(label_set), 4, False)]
        words = [pseudo_word(7919 * topic + 1), pseudo_word(7919 * topic + 2)]
        words += [pseudo_word(label, 4) for label in shown] + [pseudo_word(int(noise[row]))]
        texts.append(" ".join(words))
    return texts


def write_synthetic_dataset(
    folder: str | os.PathLike, num_labels: int, train_rows: int, eval_rows: tuple[int, int], seed: int = 0
) -> dict[str, Path]:
    """Write ``train.jsonl``, ``validation.jsonl`` and ``test.jsonl`` into ``folder``; returns ``{split: path}``.

    ``train.jsonl``: ``train_rows`` drawn rows (the rows trained on), then the cover rows of
    :func:`cover_rows` (every label at least once in the file, so the product's train vocabulary has all n);
    validation and test: ``eval_rows`` drawn rows. Deterministic for a seed.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    generator = np.random.default_rng(seed)
    paths = {}
    for split, rows in (("train", train_rows), ("validation", eval_rows[0]), ("test", eval_rows[1])):
        sets, topics = synthetic_label_sets(num_labels, rows, generator)
        if split == "train":
            extra_sets, extra_topics = cover_rows(sets, num_labels)
            sets, topics = sets + extra_sets, np.concatenate([topics, extra_topics])
        texts = synthetic_texts(sets, topics, generator)
        paths[split] = folder / f"{split}.jsonl"
        with open(paths[split], "w") as handle:
            for text, label_set in zip(texts, sets, strict=True):
                handle.write(json.dumps({"text": text, "labels": [label_name(i) for i in label_set]}) + "\n")
    return paths


def dense_state_gb(num_labels: int, dim: int = 384) -> float:
    """A dense head's weights + gradients + Adam's two moments, float32, in GB (1e9 bytes)."""
    return 4 * (num_labels * dim + num_labels) * 4 / 1e9


# ----------------------------------------------------------------------------------------------------------------
# Phases run in child processes (python benchmarks/scale.py --phase NAME ...)
# ----------------------------------------------------------------------------------------------------------------


def _data_arguments(data: Path):
    from hf_dft_head.data import DataArguments

    return DataArguments(data_files=[f"{split}={data / f'{split}.jsonl'}" for split in ("train", "validation", "test")])


def phase_load(data: Path) -> str:
    """Read the files, names -> ids, vocabulary, label-set statistics: what ``hf-dft train`` does first."""
    from hf_dft_head import data as data_lib

    loaded = data_lib.load_data(_data_arguments(data))
    statistics = data_lib.label_set_statistics(loaded, 10)
    rows = sum(len(split) for split in loaded.dataset.values())
    mean = statistics["train"]["mean_labels"]
    return f"{rows:,} rows, {loaded.num_labels:,} labels, train file mean {mean:.2f} labels (cover rows included)"


def phase_features(data: Path, train_examples: int) -> str:
    """The frozen encoder's features of the rows ``hf-dft train`` will use, into the ``datasets`` cache."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from hf_dft_head import DFTForMultiLabelClassification, encoder_features, training_args, training_data

    args = training_args.DFTTrainingArguments(
        **vars(_data_arguments(data)), output_dir="unused", max_train_samples=train_examples, freeze_encoder=True
    )
    torch.set_num_threads(1)
    loaded = training_data.load_training_data(args)
    encoder_path = encoder_features.bundled_encoder_path()
    model = DFTForMultiLabelClassification.from_encoder(
        AutoModel.from_pretrained(encoder_path, num_hidden_layers=1),
        id2label=loaded.vocabulary.id2label,
        k=10,
        freeze_encoder=True,
    )
    splits = encoder_features.compute_encoder_features(
        model, AutoTokenizer.from_pretrained(encoder_path), loaded.dataset, max_length=16, batch_size=128
    )
    return f"{sum(len(split) for split in splits.values()):,} rows encoded (d = {model.config.hidden_size})"


PHASES = ("load", "features", "train", "evaluate", "certify", "predict")


HEAD_OPTIONS = {"dft": ["--head", "dft"], "bottleneck": ["--head", "bottleneck"], "dense": ["--head", "dense"]}


def head_runs(args: argparse.Namespace) -> list[tuple[str, str, list[str]]]:
    """``(head kind, row name, train options)`` of every head to run: one DFT head per ``--dft-k``."""
    runs = []
    for head in args.heads:
        if head != "dft":
            runs.append((head, head, HEAD_OPTIONS[head]))
            continue
        for k in args.dft_k:
            name = "dft" if args.dft_k == [10] else f"dft-k{k}"
            runs.append((head, name, [*HEAD_OPTIONS[head], "--k", str(k)]))
    return runs


def cli_command(phase: str, head_options: list[str], data: Path, run: Path, args: argparse.Namespace) -> list[str]:
    """The ``hf-dft`` command line of a CLI phase; ``head_options``: train's options of the head."""
    hf_dft = [sys.executable, "-m", "hf_dft_head.cli"]
    files = ["--data-files", *[f"{split}={data / f'{split}.jsonl'}" for split in ("train", "validation", "test")]]
    if phase == "train":
        return [
            *hf_dft,
            "train",
            *files,
            *head_options,
            "--freeze-encoder",
            "--encoder-layers",
            "1",
            "--max-length",
            "16",
            "--epochs",
            "1",
            "--batch-size",
            str(args.batch_size),
            "--eval-batch-size",
            str(args.batch_size),
            "--max-train-samples",
            str(args.train_examples),
            "--label-order",
            args.label_order,
            "--output-dir",
            str(run),
            "--quiet",
        ]
    if phase == "evaluate":
        return [*hf_dft, "evaluate", str(run), *files, "--split", "test", "--max-length", "16", "--quiet"]
    if phase == "certify":
        return [*hf_dft, "certify", str(run), "--split", "test", "--max-length", "16", "--quiet"]
    if phase == "predict":
        output = run.parent / f"{run.name}_predictions.jsonl"
        return [*hf_dft, "predict", str(run), "--input", str(data / "test.jsonl"), "--output", str(output), "--quiet"]
    raise ValueError(phase)


def run_child(command: list[str], env: dict[str, str], timeout: float) -> tuple[float, float, int | None, str]:
    """``(wall s, peak RSS MB, exit code or None on timeout, last lines of output)`` of one child process.

    ``os.wait4`` gives this child's own resource usage (Linux: its peak RSS, or the largest of the children it
    waited for), so each phase's peak is its own, not the benchmark's.
    """
    start = time.perf_counter()
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        code: int | None = None
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                code = os.waitstatus_to_exitcode(status)
                process.returncode = code
                break
            if time.perf_counter() - start > timeout:
                process.kill()
                _, _, usage = os.wait4(process.pid, 0)
                process.returncode = -9
                break
            time.sleep(0.05)
        log.seek(0)
        tail = log.read().decode(errors="replace").strip().splitlines()[-3:]
    return time.perf_counter() - start, usage.ru_maxrss / 1024, code, " / ".join(tail)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--labels", type=int, nargs="+", default=[10_000, 100_000, 1_000_000], help="label counts")
    parser.add_argument("--train-examples", type=int, default=20_000, help="train rows trained on (one epoch)")
    parser.add_argument("--validation-examples", type=int, default=200, help="validation rows (evaluated by train)")
    parser.add_argument("--test-examples", type=int, default=1000, help="test rows (evaluate, certify, predict)")
    parser.add_argument("--heads", nargs="+", default=list(HEAD_OPTIONS), choices=list(HEAD_OPTIONS))
    parser.add_argument(
        "--dft-k",
        type=int,
        nargs="+",
        default=[10],
        help="k of the DFT head; several values train one DFT head each (rows dft-k<k>), to compare capacity",
    )
    parser.add_argument("--batch-size", type=int, default=32, help="train and evaluation batch size")
    parser.add_argument(
        "--label-order",
        default="frequency",
        choices=["cooccurrence", "frequency", "name"],
        help="DFT circle order (cooccurrence runs the label-order search: 34 s at 100k labels, README)",
    )
    parser.add_argument("--dense-limit-gb", type=float, default=3.0, help="skip bottleneck/dense heads above this")
    parser.add_argument("--phase-timeout", type=float, default=1800, help="seconds before a phase is stopped")
    parser.add_argument("--work-dir", default=None, help="keep data and runs here (default: a temporary folder)")
    parser.add_argument("--quick", action="store_true", help="10k labels, 2,000 train examples, DFT only")
    parser.add_argument("--phase", choices=["load", "features"], help=argparse.SUPPRESS)  # child
    parser.add_argument("--data", default=None, help=argparse.SUPPRESS)  # child
    args = parser.parse_args()
    if args.phase == "load":
        print("RESULT " + phase_load(Path(args.data)))
        return
    if args.phase == "features":
        print("RESULT " + phase_features(Path(args.data), args.train_examples))
        return
    if args.quick:
        args.labels, args.train_examples, args.heads, args.test_examples = [10_000], 2000, ["dft"], 200

    root = Path(args.work_dir or tempfile.mkdtemp(prefix="hf_dft_scale_"))
    print(
        f"train examples {args.train_examples:,} (one epoch, batch {args.batch_size}), validation "
        f"{args.validation_examples:,}, test {args.test_examples:,}; encoder: bundled all-MiniLM-L6-v2, 1 layer, "
        f"max length 16, frozen (d = 384); label order {args.label_order}; OMP_NUM_THREADS="
        f"{os.environ.get('OMP_NUM_THREADS', 'unset')}"
    )
    print("\n| n | head | phase | wall s | peak RSS MB | per example ms | result |\n|---|---|---|---|---|---|---|")
    table: dict[tuple[int, str, str], tuple[float, int]] = {}
    for num_labels in args.labels:
        size_dir = root / f"n{num_labels}"
        data = size_dir / "data"
        env = {**os.environ, "HF_DATASETS_CACHE": str(size_dir / "datasets_cache"), "TOKENIZERS_PARALLELISM": "false"}
        start = time.perf_counter()
        paths = write_synthetic_dataset(
            data, num_labels, args.train_examples, (args.validation_examples, args.test_examples)
        )
        with open(paths["train"]) as handle:
            train_rows = sum(1 for _ in handle)
        print(
            f"| {num_labels:,} | - | write data (not timed per phase) | {time.perf_counter() - start:.1f} | - | - | "
            f"{train_rows:,} train rows |",
            flush=True,
        )
        rows_all = train_rows + args.validation_examples + args.test_examples
        rows_features = args.train_examples + args.validation_examples + args.test_examples
        examples = {
            "load": rows_all,
            "features": rows_features,
            "train": args.train_examples,
            "evaluate": args.test_examples,
            "certify": args.test_examples,
            "predict": args.test_examples,
        }
        me = [sys.executable, __file__, "--data", str(data), "--train-examples", str(args.train_examples)]
        for phase in ("load", "features"):
            seconds, rss, code, tail = run_child([*me, "--phase", phase], env, args.phase_timeout)
            note = tail.split("RESULT ")[-1] if code == 0 else f"exit {code}: {tail}"
            table[(num_labels, "all", phase)] = (seconds / examples[phase], code)
            print(
                f"| {num_labels:,} | all | {phase} | {seconds:.1f} | {rss:.0f} | "
                f"{1000 * seconds / examples[phase]:.3f} | {note} |",
                flush=True,
            )
        for head, name, head_options in head_runs(args):
            if head != "dft" and dense_state_gb(num_labels) > args.dense_limit_gb:
                print(
                    f"| {num_labels:,} | {name} | skipped | - | - | - | dense head state (weights+grads+Adam) "
                    f"{dense_state_gb(num_labels):.2f} GB > --dense-limit-gb {args.dense_limit_gb} |",
                    flush=True,
                )
                continue
            run = size_dir / f"run_{name}"
            for phase in PHASES[2:]:
                command = cli_command(phase, head_options, data, run, args)
                seconds, rss, code, tail = run_child(command, env, args.phase_timeout)
                note = {0: "ok", 1: "exit 1 (certify: not certified)", None: f"stopped at {args.phase_timeout:.0f} s"}
                note = note.get(code, f"exit {code}") + (f": {tail[-300:]}" if code != 0 or phase == "evaluate" else "")
                table[(num_labels, name, phase)] = (seconds / examples[phase], code)
                print(
                    f"| {num_labels:,} | {name} | {phase} | {seconds:.1f} | {rss:.0f} | "
                    f"{1000 * seconds / examples[phase]:.3f} | {note} |",
                    flush=True,
                )
                if phase == "train" and code != 0:  # later phases read the trained checkpoint
                    break
        print(
            f"| {num_labels:,} | dense | requirement | - | {1000 * dense_state_gb(num_labels):.0f} | - | "
            f"weights + grads + Adam, float32, d = 384 (the DFT head: {4 * 4 * (384 * 21 + 21) / 1e6:.2f} MB) |",
            flush=True,
        )
    sizes = sorted(args.labels)
    if 10_000 in sizes and 100_000 in sizes:
        print("\nPer-example wall time, 100k / 10k labels:")
        for (n, head, phase), (per_example, code) in table.items():
            other = table.get((100_000, head, phase))
            if n == 10_000 and other and code in (0, 1) and other[1] in (0, 1):
                print(f"  {head:>10} {phase:<9} {other[0] / per_example:.2f}x")
    if not args.work_dir:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
