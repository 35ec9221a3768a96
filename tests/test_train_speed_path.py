"""Head-only training on cached features held in memory: the same batches, order and results as the row loader.

References: the per-example path (a ``datasets`` table read row by row and collated by ``MultiLabelCollator``,
prepared by Accelerate for one and for two processes), the sampling order written out from its specification
(``torch.randperm`` seeded with ``seed + epoch``, cut into batches), multi-hot rows built by hand from the id lists,
and a whole training run on the row loader (``HF_DFT_DEBUG_ROW_LOADER=1``) compared bit for bit.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import datasets
import pytest
import torch
from accelerate.data_loader import prepare_data_loader, skip_first_batches
from transformers import AutoModel

from hf_dft_head import data as data_lib
from hf_dft_head import training
from hf_dft_head.cli import main as cli_main
from hf_dft_head.encoder_features import FEATURES_COLUMN
from hf_dft_head.feature_batches import InMemoryFeatures
from hf_dft_head.layers import DFTHead
from hf_dft_head.training_args import DFTTrainingArguments
from hf_dft_head.training_data import INDEX_COLUMN, build_dataloaders, feature_loaders

NUM_LABELS = 7
SEED = 5


def cached_split(rows: int, *, shuffled: bool = False) -> datasets.Dataset:
    """A split shaped like compute_encoder_features' output: float32 features (3,), id lists (some empty), index.

    ``shuffled``: the rows come through ``select`` (an index mapping over the table, not flattened)."""
    rng = random.Random(rows)
    table = datasets.Dataset.from_dict(
        {
            FEATURES_COLUMN: [[rng.uniform(-1, 1) for _ in range(3)] for _ in range(rows)],
            data_lib.LABELS_COLUMN: [sorted(rng.sample(range(NUM_LABELS), rng.randint(0, 4))) for _ in range(rows)],
            INDEX_COLUMN: list(range(rows)),
        },
        features=datasets.Features(
            {
                FEATURES_COLUMN: datasets.List(datasets.Value("float32")),
                data_lib.LABELS_COLUMN: datasets.List(datasets.Value("int64")),
                INDEX_COLUMN: datasets.Value("int64"),
            }
        ),
    )
    if shuffled:
        order = list(range(rows))
        rng.shuffle(order)
        table = table.select(order)
    return table


def both_loaders(splits: datasets.DatasetDict, batch_size: int) -> tuple[dict, dict]:
    """(row loaders as before, in-memory loaders), built by the training module for the same arguments."""
    args = DFTTrainingArguments(output_dir="unused", batch_size=batch_size, eval_batch_size=batch_size + 1, seed=SEED)
    columns = [FEATURES_COLUMN, data_lib.LABELS_COLUMN, INDEX_COLUMN]
    rows = build_dataloaders(splits, data_lib.MultiLabelCollator(NUM_LABELS), args, columns, "numpy")
    return rows, feature_loaders(splits, NUM_LABELS, args)


def prepared(loader, num_processes: int, process_index: int):
    """The loader as Accelerate prepares it in train() (seedable sampler, data seed), for one of the processes."""
    return prepare_data_loader(
        loader,
        num_processes=num_processes,
        process_index=process_index,
        put_on_device=False,
        use_seedable_sampler=True,
        data_seed=SEED,
    )


def assert_same_batches(expected: list[dict], got: list[dict]) -> None:
    assert len(got) == len(expected) > 0
    for want, have in zip(expected, got, strict=True):
        assert sorted(have) == sorted(want)
        for key, value in want.items():
            assert have[key].dtype == value.dtype, key
            assert torch.equal(have[key], value), key


@pytest.mark.parametrize("num_processes, process_index", [(1, 0), (2, 0), (2, 1), (3, 2)])
@pytest.mark.parametrize("shuffled", [False, True])
def test_in_memory_batches_equal_the_row_loaders(num_processes, process_index, shuffled):
    """37 train rows in batches of 4 (an uneven last batch: Accelerate's even batches wrap around), 23 eval rows;
    two epochs each, and the mid-epoch skip that --resume uses."""
    splits = datasets.DatasetDict({"train": cached_split(37, shuffled=shuffled), "validation": cached_split(23)})
    rows, memory = both_loaders(splits, batch_size=4)
    for name in ("train", "validation"):
        old = prepared(rows[name], num_processes, process_index)
        new = prepared(memory[name], num_processes, process_index)
        for epoch in (0, 1):
            old.set_epoch(epoch)
            new.set_epoch(epoch)
            assert_same_batches(list(old), list(new))
        old.set_epoch(1)
        new.set_epoch(1)
        assert_same_batches(list(skip_first_batches(old, 1)), list(skip_first_batches(new, 1)))


def test_train_order_is_the_seeded_permutation_of_each_epoch():
    """One process: epoch e visits the rows in torch.randperm(N) order drawn from a generator seeded SEED + e."""
    split = cached_split(37, shuffled=True)
    loader = prepared(both_loaders(datasets.DatasetDict({"train": split}), batch_size=4)[1]["train"], 1, 0)
    stored_index = split[INDEX_COLUMN]
    for epoch in (0, 1, 2):
        loader.set_epoch(epoch)
        order = torch.randperm(37, generator=torch.Generator().manual_seed(SEED + epoch)).tolist()
        expected = [[stored_index[i] for i in order[start : start + 4]] for start in range(0, 37, 4)]
        assert [batch[INDEX_COLUMN].tolist() for batch in loader] == expected


def test_labels_and_features_match_the_rows_written_out_by_hand():
    split = cached_split(19, shuffled=True)
    dataset = InMemoryFeatures.from_split(
        split, NUM_LABELS, features_key=FEATURES_COLUMN, labels_key=data_lib.LABELS_COLUMN, index_key=INDEX_COLUMN
    )
    rows = [18, 0, 7, 7, 3]  # a repeated row, as even batches produce
    batch = dataset.__getitems__(rows)
    for position, row in enumerate(rows):
        example = split[row]
        hot = [1.0 if label in example[data_lib.LABELS_COLUMN] else 0.0 for label in range(NUM_LABELS)]
        assert batch["labels"][position].tolist() == hot
        assert batch[FEATURES_COLUMN][position].tolist() == pytest.approx(example[FEATURES_COLUMN], abs=0)
        assert int(batch[INDEX_COLUMN][position]) == example[INDEX_COLUMN]
    assert batch[FEATURES_COLUMN].dtype == torch.float32 and batch["labels"].shape == (5, NUM_LABELS)
    assert dataset[3]["labels"].shape == (NUM_LABELS,)


def test_label_ids_outside_the_vocabulary_are_refused():
    with pytest.raises(ValueError, match=r"label ids must lie in \[0, 5\)"):
        InMemoryFeatures.from_split(
            cached_split(9), 5, features_key=FEATURES_COLUMN, labels_key=data_lib.LABELS_COLUMN, index_key=INDEX_COLUMN
        )


def test_head_multiply_adds_of_the_disaster_head():
    """P (29 x 384), c (29), slack (34 x 8) and the fixed (34 x 21) matrix, per example, times the batch."""
    head = DFTHead(384, 34, 10, 8)
    assert training.head_multiply_adds(head, 128) == 128 * (29 * 384 + 29 + 34 * 8 + 34 * 21)
    assert training.head_multiply_adds(head, 128) <= training.ONE_THREAD_MAX_MULTIPLY_ADDS


@pytest.fixture(scope="module")
def small_data(tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("speed_path_data")
    rng = random.Random(1)
    words = ["water", "food", "fire", "flood", "storm", "road", "power", "medical"]
    files = {}
    for split, count in (("train", 40), ("validation", 13), ("test", 11)):
        rows = []
        for _ in range(count):
            chosen = rng.sample(words, rng.randint(0, 3))
            rows.append({"text": f"we need help now {' '.join(chosen)}", "labels": sorted(chosen)})
        files[split] = str(folder / f"{split}.jsonl")
        Path(files[split]).write_text("".join(json.dumps(row) + "\n" for row in rows))
    return files


def run_args(data: dict[str, str], output_dir: Path, minilm_path: str) -> list[str]:
    """40 train rows in batches of 6 (7 batches, the last of 4) accumulated 3 at a time: every epoch ends on a
    partial accumulation, which Accelerate steps at the end of the data."""
    return [
        "train",
        *("--encoder", minilm_path, "--encoder-layers", "1", "--freeze-encoder"),
        *("--data-files", f"train={data['train']}", f"validation={data['validation']}", f"test={data['test']}"),
        *("--label-column", "labels", "--output-dir", str(output_dir), "--head", "dft", "--k", "2"),
        *("--slack-dims", "2", "--batch-size", "6", "--eval-batch-size", "5", "--gradient-accumulation-steps", "3"),
        *("--epochs", "3", "--dropout", "0.3", "--learning-rate", "0.05", "--logging-steps", "1"),
    ]


def test_training_on_the_in_memory_path_equals_the_row_loader_bit_for_bit(
    small_data, minilm_path, tmp_path, monkeypatch
):
    """Same head weights, same metrics at every evaluation, same losses: the path changes speed, nothing else.

    Both runs on one thread (the in-memory path picks 1 for this head; the row loader keeps the caller's count),
    since a float sum may round differently when split over threads. The caller's count is restored afterwards."""
    calls = []
    real_set_num_threads = torch.set_num_threads
    monkeypatch.setattr(torch, "set_num_threads", lambda count: (calls.append(count), real_set_num_threads(count)))
    before = torch.get_num_threads()
    try:
        real_set_num_threads(1)
        monkeypatch.setenv(training.ROW_LOADER_ENV, "1")
        assert cli_main(run_args(small_data, tmp_path / "rows", minilm_path)) == 0
        assert calls == [1]  # the row loader only restores the caller's count
        monkeypatch.delenv(training.ROW_LOADER_ENV)
        real_set_num_threads(2)
        calls.clear()
        assert cli_main(run_args(small_data, tmp_path / "memory", minilm_path)) == 0
        assert calls == [1, 2]  # one thread for this small head, then the caller's count back
        assert torch.get_num_threads() == 2
    finally:
        real_set_num_threads(before)

    rows, memory = (AutoModel.from_pretrained(tmp_path / name).head.state_dict() for name in ("rows", "memory"))
    assert sorted(rows) == sorted(memory)
    for name, value in rows.items():
        assert torch.equal(memory[name], value), name
    results = [json.loads((tmp_path / name / "eval_results.json").read_text()) for name in ("rows", "memory")]
    for result in results:
        result.pop("train_seconds")
    assert results[0] == results[1] and results[0]["global_step"] == 3 * 3

    def losses(name: str) -> list[float]:
        lines = (tmp_path / name / "log.jsonl").read_text().splitlines()
        return [record["loss"] for record in map(json.loads, lines) if "loss" in record]

    assert losses("rows") == losses("memory") and len(losses("rows")) == 9
