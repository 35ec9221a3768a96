"""Bad input as a careless user gives it: every case a clear message and exit code 2, no traceback, nothing lost.

Each CLI case runs ``hf_dft_head.cli.main`` (an escaping exception fails the test, so "no traceback" is checked by
the call itself and by the captured output) and compares the files that were there before (bytes and mtimes).
Read-only folders are made read-only for real: permission bits for a normal user; for root, which ignores them, a
read-only bind mount in a private mount namespace (``unshare --mount``), in a subprocess.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import random
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from conftest import REPO_ROOT
from transformers import AutoModel, BertConfig, BertModel, BertTokenizerFast

from hf_dft_head import DFTForMultiLabelClassification, audit, output_checks, training
from hf_dft_head.cli import main as cli_main
from hf_dft_head.data import DataFileError, load_multilabel_dataset

WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "water", "food", "fire", "flood", "need", "help", "now", "the"]
LABELS = ["fire", "flood", "food", "water"]


# ------------------------------------------------------------------------------------------------ fixtures


def save_tiny_encoder(folder: Path) -> Path:
    """A 1-layer BERT (hidden 32) and its tokenizer: trains a frozen-encoder run in about a second."""
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(WORDS), hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37
    )
    BertModel(config).save_pretrained(folder)
    BertTokenizerFast(vocab={word: i for i, word in enumerate(WORDS)}).save_pretrained(folder)
    return folder


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def toy_rows(count: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        chosen = sorted(rng.sample(LABELS, rng.randint(0, 2)))
        rows.append({"text": f"we need {' '.join(chosen)} now", "labels": chosen})
    return rows


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bad_input")
    out = {"encoder": save_tiny_encoder(root / "encoder")}
    for split, count, seed in (("train", 40, 0), ("validation", 12, 1), ("test", 12, 2)):
        out[split] = write_jsonl(root / f"{split}.jsonl", toy_rows(count, seed))
    return out


def train_argv(
    files: dict[str, Path], output_dir: Path, *extra: str, train_file: Path | None = None, train_only: bool = False
) -> list[str]:
    """``hf-dft train`` on the toy files (``train_file`` replacing the train split; alone with ``train_only``)."""
    splits = [] if train_only else [f"validation={files['validation']}", f"test={files['test']}"]
    return [
        "train",
        "--encoder",
        str(files["encoder"]),
        "--data-files",
        f"train={train_file or files['train']}",
        *splits,
        "--label-column",
        "labels",
        "--output-dir",
        str(output_dir),
        "--k",
        "1",
        "--freeze-encoder",
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--learning-rate",
        "0.01",
        *extra,
    ]


@pytest.fixture(scope="module")
def trained_run(files, tmp_path_factory) -> Path:
    """A finished run (checkpoint, state/, training_args.json, log.jsonl): copy it before changing anything."""
    out = tmp_path_factory.mktemp("trained") / "run"
    assert cli_main(train_argv(files, out)) == 0
    return out


def copy_run(run: Path, tmp_path: Path, name: str = "run") -> Path:
    return Path(shutil.copytree(run, tmp_path / name))


def snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    """``{relative path: (sha256, mtime_ns)}`` of every file below ``folder``."""
    return {
        str(path.relative_to(folder)): (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns)
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def refused(argv: list[str], capsys, *fragments: str) -> str:
    """Run the CLI, expect exit code 2 and every fragment in the one-line error; returns stderr."""
    code = cli_main(argv)
    captured = capsys.readouterr()
    output = captured.out + captured.err
    assert code == 2, output[-3000:]
    assert "Traceback" not in output
    error = [line for line in captured.err.splitlines() if line.startswith(f"hf-dft {argv[0]}: error: ")]
    assert error, captured.err[-3000:]
    for fragment in fragments:
        assert fragment in error[-1], (fragment, error[-1])
    return error[-1]


def forbid(monkeypatch, module, name: str) -> None:
    """Make ``module.name`` fail the test if called: the refusal must come before that (long) work."""

    def called(*args, **kwargs):
        raise AssertionError(f"{module.__name__}.{name} ran: the error should have come before it")

    monkeypatch.setattr(module, name, called)


# ------------------------------------------------------------------------------------------------ empty data


def test_empty_data_file_is_refused_by_train_and_certify_and_overwrite_keeps_the_old_run(
    files, trained_run, tmp_path, capsys
):
    empty, blank = tmp_path / "empty.jsonl", tmp_path / "blank.jsonl"
    empty.write_bytes(b"")
    blank.write_text("\n  \n\n")
    for bad in (empty, blank):
        out = tmp_path / f"new_{bad.stem}"
        refused(train_argv(files, out, train_file=bad), capsys, str(bad), "is empty", "no rows")
        assert not out.exists()

    run = copy_run(trained_run, tmp_path)
    before = snapshot(run)
    refused(train_argv(files, run, "--overwrite", train_file=empty), capsys, str(empty), "is empty")
    assert snapshot(run) == before  # --overwrite removed nothing: the data failed first

    for bad in (empty, blank):
        refused(["certify", str(run), "--dataset", str(bad), "--quiet"], capsys, str(bad), "is empty")
    assert snapshot(run) == before  # no certificate, no figure


def test_empty_csv_and_parquet_say_they_have_no_rows(tmp_path):
    header_only = tmp_path / "header.csv"
    header_only.write_text("text,labels\n")
    with pytest.raises(DataFileError, match="header.csv has a header line but no rows"):
        load_multilabel_dataset(str(header_only))
    no_rows = tmp_path / "none.parquet"
    pq.write_table(
        pa.table({"text": pa.array([], pa.string()), "labels": pa.array([], pa.list_(pa.string()))}), no_rows
    )
    with pytest.raises(DataFileError, match="none.parquet is a Parquet file with 0 rows"):
        load_multilabel_dataset(str(no_rows))
    not_parquet = tmp_path / "fake.parquet"
    not_parquet.write_text('{"text": "a", "labels": ["x"]}\n')
    with pytest.raises(DataFileError, match="fake.parquet is not a valid Parquet file"):
        load_multilabel_dataset(str(not_parquet))


# ------------------------------------------------------------------------------------------------ broken lines


def test_broken_jsonl_line_names_the_file_and_the_line(files, tmp_path, capsys):
    rows = [json.dumps(row) for row in toy_rows(6, 3)]
    broken = tmp_path / "broken.jsonl"
    broken.write_text("\n".join([*rows[:4], '{"text": "we need water", "labels": ["water"', *rows[4:]]) + "\n")
    out = tmp_path / "out"
    refused(train_argv(files, out, train_file=broken), capsys, f"{broken}, line 5:", "not valid JSON")
    assert not out.exists()

    # A line holding a list, not an object; a blank line before it still counts in the numbering.
    not_object = tmp_path / "list_line.jsonl"
    not_object.write_text(f"{rows[0]}\n\n[1, 2]\n{rows[1]}\n")
    with pytest.raises(DataFileError, match=r"list_line.jsonl, line 3: holds a JSON list, not an object"):
        load_multilabel_dataset(str(not_object))

    # Far past the first block that datasets' parser reads, and compressed: the line number is still exact.
    late = tmp_path / "late.jsonl.gz"
    many = [json.dumps({"text": f"row {i} water", "labels": ["water"]}) for i in range(3000)]
    with gzip.open(late, "wt", encoding="utf-8") as handle:
        handle.write("\n".join([*many, "{oops", *many[:3]]) + "\n")
    with pytest.raises(DataFileError, match=r"late.jsonl.gz, line 3001: not valid JSON"):
        load_multilabel_dataset(str(late))


def test_a_json_document_error_names_its_line_and_column(tmp_path):
    document = tmp_path / "records.json"
    document.write_text('[\n  {"text": "a", "labels": ["x"]},\n  {"text": "b", "labels": ["y"]\n]\n')
    with pytest.raises(DataFileError, match=r"records.json, line 4, column 1: not valid JSON"):
        load_multilabel_dataset(str(document))


def test_non_utf8_file_names_the_line_and_the_byte(files, tmp_path, capsys):
    latin = tmp_path / "latin1.jsonl"
    latin.write_bytes(
        '{"text": "we need water", "labels": ["water"]}\n{"text": "caf\xe9 food", "labels": ["food"]}\n'.encode(
            "latin-1"
        )
    )
    refused(train_argv(files, tmp_path / "out", train_file=latin), capsys, f"{latin} is not UTF-8", "line 2", "0xe9")
    csv = tmp_path / "latin1.csv"
    csv.write_bytes("text,labels\nwater now,water\nfood caf\xe9,food\n".encode("latin-1"))
    with pytest.raises(DataFileError, match=r"latin1.csv is not UTF-8 text: line 3 holds the byte 0xe9"):
        load_multilabel_dataset(str(csv))


# ------------------------------------------------------------------------------------------------ output folders


def test_output_path_under_a_regular_file_is_refused_before_any_work(files, trained_run, tmp_path, capsys, monkeypatch):
    a_file = tmp_path / "not_a_folder"
    a_file.write_text("keep me")
    forbid(monkeypatch, training, "load_training_data")
    forbid(monkeypatch, audit, "load_audit_split")
    refused(train_argv(files, a_file / "run"), capsys, f"--output-dir {a_file / 'run'}", "is a file, not a folder")
    refused(train_argv(files, a_file), capsys, f"--output-dir {a_file} exists and is not a folder")
    argv = ["audit", str(trained_run), "--dataset", str(files["test"]), "--quiet"]
    refused([*argv, "--output", str(a_file / "report.json")], capsys, "--output", "is a file, not a folder")
    refused([*argv, "--output", str(tmp_path / "r.json"), "--plot", str(a_file / "x" / "fig.png")], capsys, "--plot")
    refused([*argv, "--output", str(tmp_path)], capsys, f"--output {tmp_path} is a folder; give a file path")
    assert a_file.read_text() == "keep me" and not (tmp_path / "r.json").exists()


# The driver runs hf-dft commands in one process and reports, per command, the exit code, stderr, and whether the
# long work (loading the training data / the audit split) started.
_DRIVER = r"""
import contextlib, io, json, sys, traceback
import hf_dft_head.audit as audit
import hf_dft_head.training as training
from hf_dft_head.cli import main

def marked(module, name):
    original = getattr(module, name)
    def wrapper(*args, **kwargs):
        print(f"LONG WORK STARTED: {name}", file=sys.stderr)
        return original(*args, **kwargs)
    setattr(module, name, wrapper)

marked(training, "load_training_data")
marked(audit, "load_audit_split")
results = []
for argv in json.loads(sys.argv[1]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except BaseException:
            traceback.print_exc()
            code = None
    results.append({"code": code, "stderr": err.getvalue()})
print("RESULTS " + json.dumps(results))
"""


def run_with_read_only_folders(folders: list[Path], commands: list[list[str]], home: Path) -> list[dict]:
    """Run ``commands`` in a subprocess that cannot write into ``folders`` (see the module docstring)."""
    env = {**os.environ, "HF_HOME": str(home), "OMP_NUM_THREADS": "1"}
    python = [sys.executable, "-c", _DRIVER, json.dumps(commands)]
    if os.geteuid() != 0:
        modes = {folder: stat.S_IMODE(folder.stat().st_mode) for folder in folders}
        for folder in folders:
            folder.chmod(0o555)
        try:
            result = subprocess.run(python, capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=600)
        finally:
            for folder, mode in modes.items():
                folder.chmod(mode)
    else:
        if shutil.which("unshare") is None:
            pytest.skip("running as root (permission bits do not apply) and no `unshare` for a read-only mount")
        mounts = " && ".join(f'mount --bind "{f}" "{f}" && mount -o remount,bind,ro "{f}" "{f}"' for f in folders)
        script = f'{mounts} && exec "$@"'
        command = ["unshare", "--mount", "sh", "-c", script, "sh", *python]
        result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=600)
        if "RESULTS " not in result.stdout and ("mount" in result.stderr or "unshare" in result.stderr):
            pytest.skip(f"running as root and a read-only bind mount is not allowed here: {result.stderr[-300:]}")
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULTS ")]
    assert lines, result.stderr[-4000:]
    return json.loads(lines[-1][len("RESULTS ") :])


@pytest.fixture(scope="module")
def read_only_results(files, trained_run, tmp_path_factory) -> dict:
    """train / audit / certify against read-only folders, in one subprocess (about 8 s)."""
    root = tmp_path_factory.mktemp("read_only")
    run = copy_run(trained_run, root, "run")  # an old run that train --overwrite must not touch
    checkpoint = copy_run(trained_run, root, "checkpoint")  # certify writes into the checkpoint
    reports = root / "reports"
    reports.mkdir()
    folders = [run, checkpoint, reports]
    before = {folder: snapshot(folder) for folder in folders}
    commands = [
        train_argv(files, run, "--overwrite"),
        train_argv(files, reports / "new_run"),
        ["audit", str(trained_run), "--dataset", str(files["test"]), "--output", str(reports / "a.json"), "--quiet"],
        ["certify", str(checkpoint), "--dataset", str(files["test"]), "--quiet"],
    ]
    results = run_with_read_only_folders(folders, commands, root / "hf_home")
    return {
        "results": dict(zip(("train_overwrite", "train_new", "audit", "certify"), results)),
        "unchanged": {folder.name: snapshot(folder) == before[folder] for folder in folders},
        "paths": {"run": run, "reports": reports, "checkpoint": checkpoint},
    }


def _assert_clear_refusal(result: dict, command: str, *fragments: str) -> None:
    assert result["code"] == 2, result["stderr"][-3000:]
    assert "Traceback" not in result["stderr"]
    error = [line for line in result["stderr"].splitlines() if line.startswith(f"hf-dft {command}: error: ")]
    assert error, result["stderr"][-3000:]
    for fragment in fragments:
        assert fragment in error[-1], (fragment, error[-1])


@pytest.mark.slow
def test_read_only_output_folder_is_refused_by_train_and_audit_before_any_work(read_only_results):
    results, paths = read_only_results["results"], read_only_results["paths"]
    _assert_clear_refusal(results["train_overwrite"], "train", f"--output-dir {paths['run']}", "cannot create files")
    _assert_clear_refusal(results["train_new"], "train", f"--output-dir {paths['reports'] / 'new_run'}", "writable")
    _assert_clear_refusal(results["audit"], "audit", "--output", str(paths["reports"]), "cannot create files")
    for name in ("train_overwrite", "train_new", "audit"):
        assert "LONG WORK STARTED" not in results[name]["stderr"], name
    assert read_only_results["unchanged"] == {"run": True, "checkpoint": True, "reports": True}


@pytest.mark.slow
def test_read_only_checkpoint_is_a_clear_certify_error(read_only_results):
    result = read_only_results["results"]["certify"]
    _assert_clear_refusal(result, "certify", str(read_only_results["paths"]["checkpoint"]))
    assert read_only_results["unchanged"]["checkpoint"]


@pytest.mark.slow
def test_certify_checks_the_checkpoint_is_writable_before_the_audit(read_only_results):
    assert "LONG WORK STARTED" not in read_only_results["results"]["certify"]["stderr"]


# ------------------------------------------------------------------------------------------------ --resume


def test_resume_with_changed_arguments_is_refused_and_lists_them(files, trained_run, tmp_path, capsys):
    run = copy_run(trained_run, tmp_path)
    before = snapshot(run)
    argv = train_argv(files, run, "--resume")
    changed = [*argv, "--learning-rate", "0.05", "--epochs", "3", "--k", "2"]
    error = refused(
        changed, capsys, "--learning-rate: run 0.01, now 0.05", "--epochs: run 1, now 3", "--k: run 1, now 2"
    )
    assert "--allow-changed-args" in error and "start a new run" in error
    assert "--dropout" not in error  # only what differs is listed
    assert snapshot(run) == before  # training_args.json (and everything else) untouched

    # What may differ freely (logging, workers, reporting) is not a change of the run: the resume goes ahead.
    assert cli_main([*argv, "--logging-steps", "3", "--num-workers", "0"]) == 0
    assert json.loads((run / "training_args.json").read_text())["logging_steps"] == 3

    # --allow-changed-args: the resume trains on with the new values, and log.jsonl keeps the old ones.
    assert cli_main([*argv, "--epochs", "2", "--allow-changed-args"]) == 0
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    resumed = [r for r in records if r.get("resumed")]
    assert resumed[-1]["changed_args"]["epochs"] == {"run": 1, "now": 2}
    assert json.loads((run / "training_args.json").read_text())["epochs"] == 2
    assert json.loads((run / "eval_results.json").read_text())["epochs_completed"] == 2


def test_resume_refuses_damaged_run_files_and_changed_data(files, trained_run, tmp_path, capsys):
    run = copy_run(trained_run, tmp_path)
    (run / "training_args.json").write_text('{"epochs": 1, ')
    before = snapshot(run)
    refused(train_argv(files, run, "--resume"), capsys, "training_args.json", "cannot read")
    assert snapshot(run) == before

    # Other data under --allow-changed-args: the saved state cannot match a model of other labels.
    run = copy_run(trained_run, tmp_path, "run2")
    before = snapshot(run)
    other = write_jsonl(tmp_path / "other.jsonl", [{"text": "we need help", "labels": ["help"]}] * 10)
    argv = train_argv(files, run, "--resume", "--allow-changed-args", train_file=other)
    refused(argv, capsys, "--resume: the data now gives 1 labels but the run", "the data changed since the run started")
    assert snapshot(run) == before

    refused(train_argv(files, tmp_path / "x", "--allow-changed-args"), capsys, "only applies with --resume")


# ------------------------------------------------------------------------------------------------ labels


def test_certify_and_audit_refuse_data_whose_labels_the_model_does_not_know(files, trained_run, tmp_path, capsys):
    alien = write_jsonl(tmp_path / "alien.jsonl", [{"text": "we need help", "labels": ["zebra", "giraffe"]}] * 6)
    unlabelled = write_jsonl(tmp_path / "none.jsonl", [{"text": "we need help", "labels": []}] * 6)
    checkpoint = copy_run(trained_run, tmp_path)
    before = snapshot(checkpoint)
    for command in (["certify", str(checkpoint)], ["audit", str(trained_run), "--output", str(tmp_path / "a.json")]):
        refused(
            [*command, "--dataset", str(alien), "--quiet"],
            capsys,
            "none of its 12 label occurrences ('giraffe', 'zebra') is a label of the model",
            "--label-column",
        )
        refused([*command, "--dataset", str(unlabelled), "--quiet"], capsys, "no example has any label")
    assert snapshot(checkpoint) == before  # not certified, nothing written
    assert not (tmp_path / "a.json").exists()


def test_null_labels_are_counted_warned_and_read_as_no_labels(tmp_path, caplog):
    rows = [
        '{"text": "water now", "labels": ["water"]}',
        '{"text": "nothing here", "labels": null}',
        '{"text": "food now", "labels": ["food"]}',
        '{"text": "no key at all"}',
        '{"text": "fire now", "labels": ["fire", "water"]}',
    ]
    jsonl = tmp_path / "nulls.jsonl"
    jsonl.write_text("\n".join(rows) + "\n")
    csv = tmp_path / "nulls.csv"
    csv.write_text("text,labels\nwater now,water\nnothing here,\nfood now,food\nstill nothing,\nfire now,fire;water\n")
    parquet = tmp_path / "nulls.parquet"
    labels = pa.array([["water"], None, ["food"], None, ["fire", "water"]], pa.list_(pa.string()))
    texts = ["water now", "nothing here", "food now", "no labels", "fire now"]
    pq.write_table(pa.table({"text": texts, "labels": labels}), parquet)
    for path, extra in ((jsonl, {}), (csv, {"label_separator": ";"}), (parquet, {})):
        caplog.clear()
        loaded = load_multilabel_dataset(str(path), validation_fraction=0, **extra)
        train = loaded.dataset["train"]
        assert loaded.summary["splits"]["train"]["null_labels"] == 2, path
        names = [loaded.vocabulary.decode(ids) for ids in train["labels"]]
        assert names == [["water"], [], ["food"], [], ["fire", "water"]], path
        assert any("2 of 5 rows have no value (null / missing)" in r.getMessage() for r in caplog.records), path

    every_row_null = tmp_path / "all_null.jsonl"
    every_row_null.write_text('{"text": "a", "labels": null}\n{"text": "b", "labels": null}\n')
    with pytest.raises(ValueError, match=r"label column 'labels' is empty \(null\) in all 2 train rows"):
        load_multilabel_dataset(str(every_row_null))


def test_null_label_count_reaches_the_training_summary(files, tmp_path):
    rows = toy_rows(20, 5) + [{"text": "we need help", "labels": None}] * 3
    data = write_jsonl(tmp_path / "train.jsonl", rows)
    out = tmp_path / "run"
    assert cli_main(train_argv(files, out, train_file=data)) == 0
    summary = json.loads((out / "label_statistics.json").read_text())["summary"]
    assert summary["splits"]["train"]["null_labels"] == 3 and summary["splits"]["test"]["null_labels"] == 0


# ------------------------------------------------------------------------------------------------ more careless input


def _misc_cases(root: Path, files: dict[str, Path]) -> list[tuple[str, list[str], Path | None, tuple[str, ...]]]:
    """(name, extra arguments, train file, message fragments)."""
    no_text = root / "no_text.csv"
    no_text.write_text("message,labels\nwater now,water\nfood now,food\n")
    mixed = root / "mixed.jsonl"
    mixed.write_text('{"text": "a", "labels": "water"}\n{"text": "b", "labels": ["food"]}\n')
    ragged = root / "ragged.csv"
    ragged.write_text("text,labels\nwater now,water\nfood,now,food\n")
    folder = root / "a_folder.jsonl"
    folder.mkdir(exist_ok=True)
    missing = root / "missing.jsonl"
    return [
        ("no text column", ["--text-column", "text"], no_text, ("text_column='text' is not a column", "message")),
        ("mixed label types", [], mixed, ("different JSON types", "a list of names")),
        ("ragged csv", [], ragged, ("ragged.csv as CSV/TSV", "Expected 2 fields in line 3")),
        ("data file is a folder", [], folder, (f"{folder} is a folder, not a data file", "--dataset")),
        ("missing data file", [], missing, (f"data file {missing} does not exist",)),
        ("unknown label format", ["--label-format", "sparse"], None, ("--label-format must be one of", "names")),
        ("no training examples", ["--max-train-samples", "0"], None, ("--max-train-samples must be >= 1",)),
        ("no eval examples", ["--max-eval-samples", "0"], None, ("--max-eval-samples must be >= 1",)),
        ("metric not in ks", ["--ks", "1", "3"], None, ("--metric-for-best 'f1@5' is not reported", "f1@3")),
        ("logging every 0 steps", ["--logging-steps", "0"], None, ("--logging-steps must be >= 1",)),
        ("eval every 0 steps", ["--eval-steps", "0"], None, ("--eval-steps must be >= 1",)),
        ("negative learning rate", ["--learning-rate", "-0.1"], None, ("--learning-rate must be a number > 0",)),
        ("unknown pooling", ["--pooling", "max"], None, ("argument --pooling: invalid choice: 'max'",)),
        ("missing encoder", ["--encoder", str(root / "no_encoder")], None, ("no such folder",)),
        ("encoder without config", ["--encoder", str(root)], None, ("cannot load its config",)),
        ("too many layers", ["--encoder-layers", "4"], None, ("--encoder-layers 4 exceeds the 1 layers",)),
    ]


def test_more_careless_training_input_is_refused_before_anything_is_written(files, tmp_path, capsys):
    for name, extra, train_file, fragments in _misc_cases(tmp_path, files):
        out = tmp_path / f"out_{name.replace(' ', '_')}"
        argv = train_argv(files, out, train_file=train_file, train_only=train_file is not None)
        refused([*argv, *extra], capsys, *fragments)
        assert not out.exists(), name


def test_missing_hub_dataset_offline_names_the_id_and_the_offline_switch(files, tmp_path, capsys):
    assert os.environ.get("HF_HUB_OFFLINE") == "1"  # conftest
    argv = ["train", "--encoder", str(files["encoder"]), "--dataset", "someone/no-such-dataset"]
    refused([*argv, "--output-dir", str(tmp_path / "o")], capsys, "'someone/no-such-dataset'", "HF_HUB_OFFLINE=1")
    refused(
        ["audit", str(tmp_path / "no_checkpoint"), "--dataset", str(files["test"]), "--output", str(tmp_path / "a")],
        capsys,
        str(tmp_path / "no_checkpoint"),
    )


def test_audit_and_certify_refuse_a_zero_batch_size_before_any_work(files, trained_run, tmp_path, capsys, monkeypatch):
    forbid(monkeypatch, audit, "load_checkpoint")
    checkpoint = copy_run(trained_run, tmp_path)
    before = snapshot(checkpoint)
    for flag in ("--batch-size", "--max-length"):
        argv = ["audit", str(trained_run), "--dataset", str(files["test"]), "--output", str(tmp_path / "a.json")]
        refused([*argv, flag, "0"], capsys, f"{flag} must be >= 1, got 0")
        refused(
            ["certify", str(checkpoint), "--dataset", str(files["test"]), flag, "0"], capsys, f"{flag} must be >= 1"
        )
    assert snapshot(checkpoint) == before and not (tmp_path / "a.json").exists()


def test_certify_with_damaged_training_args_names_the_file(trained_run, tmp_path, capsys):
    checkpoint = copy_run(trained_run, tmp_path)
    (checkpoint / "training_args.json").write_text('{"data_files": ')
    refused(["certify", str(checkpoint), "--quiet"], capsys, "training_args.json", "--dataset")


# ------------------------------------------------------------------------------------------------ freeze_encoder


def test_freeze_encoder_survives_from_pretrained_and_trainer_leaves_the_encoder_alone(tmp_path):
    from transformers import Trainer
    from transformers import TrainingArguments as HFTrainingArguments

    torch.manual_seed(0)
    encoder = BertModel(BertConfig(vocab_size=len(WORDS), hidden_size=32, num_hidden_layers=1, num_attention_heads=2))
    model = DFTForMultiLabelClassification.from_encoder(encoder, id2label=dict(enumerate(LABELS)), k=1)
    model.freeze_encoder()
    model.save_pretrained(tmp_path / "frozen")
    for loaded in (
        DFTForMultiLabelClassification.from_pretrained(tmp_path / "frozen"),
        AutoModel.from_pretrained(tmp_path / "frozen"),
        DFTForMultiLabelClassification.from_pretrained(tmp_path / "frozen", output_loading_info=True)[0],
    ):
        assert loaded.config.freeze_encoder
        assert not any(p.requires_grad for p in loaded.encoder.parameters())
        assert all(p.requires_grad for p in loaded.head.parameters())

    reloaded = DFTForMultiLabelClassification.from_pretrained(tmp_path / "frozen")
    encoder_before = {k: v.clone() for k, v in reloaded.encoder.state_dict().items()}
    head_before = {k: v.clone() for k, v in reloaded.head.state_dict().items()}
    generator = torch.Generator().manual_seed(1)
    examples = [
        {
            "input_ids": torch.randint(5, len(WORDS), (6,), generator=generator),
            "attention_mask": torch.ones(6, dtype=torch.long),
            "labels": (torch.rand(len(LABELS), generator=generator) > 0.5).float(),
        }
        for _ in range(8)
    ]
    arguments = HFTrainingArguments(
        output_dir=str(tmp_path / "trainer"),
        max_steps=3,
        per_device_train_batch_size=4,
        learning_rate=0.1,
        report_to=[],
        save_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
    )
    Trainer(model=reloaded, args=arguments, train_dataset=examples).train()
    for name, value in reloaded.encoder.state_dict().items():
        torch.testing.assert_close(value, encoder_before[name], rtol=0, atol=0)
    assert any(not torch.equal(reloaded.head.state_dict()[k], v) for k, v in head_before.items())


# ------------------------------------------------------------------------------------------------ file modes


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002], ids=["umask022", "umask077", "umask002"])
def test_written_reports_get_the_mode_a_plain_write_would(tmp_path, umask):
    old = os.umask(umask)
    try:
        fresh = output_checks.write_json({"a": 1}, tmp_path / "fresh.json")
        with open(tmp_path / "plain.json", "w") as handle:  # the independent reference: a plain write
            handle.write("{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o666 & ~umask
    assert stat.S_IMODE(fresh.stat().st_mode) == stat.S_IMODE((tmp_path / "plain.json").stat().st_mode)

    existing = tmp_path / "existing.json"
    existing.write_text("{}")
    existing.chmod(0o640)
    output_checks.write_json({"b": 2}, existing)  # replacing a file keeps its mode, as open(path, "w") would
    assert stat.S_IMODE(existing.stat().st_mode) == 0o640 and json.loads(existing.read_text()) == {"b": 2}
    assert not list(tmp_path.glob(".*.tmp"))


def test_certificate_and_figure_are_readable_by_others_under_umask_022(files, trained_run, tmp_path, capsys):
    checkpoint = copy_run(trained_run, tmp_path)
    old = os.umask(0o022)
    try:
        code = cli_main(["certify", str(checkpoint), "--dataset", str(files["test"]), "--quiet"])
    finally:
        os.umask(old)
    capsys.readouterr()
    assert code in (0, 1)  # certified or not: both files are written
    for name in ("dft_certificate.json", "argmaxability.png"):
        assert stat.S_IMODE((checkpoint / name).stat().st_mode) == 0o644, name


def test_write_check_leaves_nothing_behind(tmp_path):
    from hf_dft_head.output_checks import check_writable_folder

    check_writable_folder(tmp_path / "a" / "b", option="--output-dir")
    assert list(tmp_path.iterdir()) == []  # neither the probe file nor the folders
