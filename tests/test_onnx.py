"""ONNX export: the graph's logits under onnxruntime match PyTorch on both DFT paths and the dense head; bad input.

Every comparison here runs onnxruntime itself on inputs of its own (tokenised sentence pairs, other batch sizes and
lengths than the export's own check) against the checkpoint loaded afresh in PyTorch.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from conftest import tiny_encoder_config
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertForSequenceClassification,
    BertTokenizer,
)

from hf_dft_head import DFTForMultiLabelClassification, gale_matrix, onnx_export
from hf_dft_head.cli import main as cli_main
from hf_dft_head.onnx_export import OnnxExportError, export_onnx, graph_input_names

WORDS = [f"tok{i}" for i in range(115)]
TOLERANCE = 1e-4


def make_checkpoint(folder: Path, family: str = "bert", tokenizer: bool = True, seed: int = 0, **head) -> Path:
    """A one-layer tiny encoder with a head moved off its initialisation, saved with a word-level tokenizer."""
    torch.manual_seed(seed)
    config = tiny_encoder_config(family)
    config.num_hidden_layers = 1  # one layer exports in half the time and covers the same operators
    encoder = AutoModel.from_config(config)
    model = DFTForMultiLabelClassification.from_encoder(encoder, num_labels=30, **head)
    with torch.no_grad():
        for parameter in model.head.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    model.save_pretrained(folder)
    if tokenizer:
        vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
        BertTokenizer(vocab={word: i for i, word in enumerate(vocab)}).save_pretrained(folder)
    return folder


def sentence_pairs(batch: int, seed: int) -> tuple[list[str], list[str]]:
    rng = np.random.default_rng(seed)

    def sentence() -> str:
        return " ".join(rng.choice(WORDS, size=int(rng.integers(1, 12))))

    return [sentence() for _ in range(batch)], [sentence() for _ in range(batch)]


def random_inputs(names: list[str], batch: int, length: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    inputs = {"input_ids": rng.integers(0, 120, (batch, length), dtype=np.int64)}
    mask = np.ones((batch, length), dtype=np.int64)
    mask[-1, length // 2 :] = 0
    inputs["attention_mask"] = mask
    if "token_type_ids" in names:
        inputs["token_type_ids"] = (np.arange(length) >= length // 3).astype(np.int64)[None].repeat(batch, 0)
    return inputs


def assert_graph_matches_pytorch(checkpoint: Path, out: Path, inputs: dict[str, np.ndarray]) -> float:
    model = AutoModelForSequenceClassification.from_pretrained(checkpoint).eval()
    session = onnxruntime.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    (actual,) = session.run(None, inputs)
    with torch.no_grad():
        expected = model(**{key: torch.from_numpy(value) for key, value in inputs.items()}).logits.numpy()
    assert actual.shape == expected.shape == (inputs["input_ids"].shape[0], 30)
    error = float(np.max(np.abs(actual - expected)))
    assert error < TOLERANCE, error
    return error


def graph_summary(out: Path) -> tuple[list[str], list[list], list[str], list[str]]:
    """Input names, their dims (symbolic names or sizes), output names, operator types."""
    graph = onnx.load(str(out / "model.onnx"), load_external_data=False).graph
    dims = [[d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in graph.input]
    return [i.name for i in graph.input], dims, [o.name for o in graph.output], [node.op_type for node in graph.node]


def gale_constant_in_graph(out: Path, n: int, k: int) -> bool:
    """Whether the graph stores G (or its transpose) as a constant: the matmul path's fingerprint."""
    model = onnx.load(str(out / "model.onnx"))
    tensors = [onnx.numpy_helper.to_array(t) for t in model.graph.initializer]
    for node in model.graph.node:
        if node.op_type == "Constant":
            tensors.extend(onnx.numpy_helper.to_array(a.t) for a in node.attribute if a.name == "value")
    g = gale_matrix(n, k)
    return any(any(t.shape == m.shape and np.allclose(t, m, rtol=0, atol=1e-7) for m in (g, g.T)) for t in tensors)


@pytest.mark.slow  # each export traces and converts a model: ~7 s of CPU
@pytest.mark.parametrize("dft_path", ["fft", "matmul"])
def test_dft_paths_export_with_dynamic_axes_and_tokenizer(dft_path, tmp_path):
    checkpoint = make_checkpoint(tmp_path / "ckpt", head_kind="dft", k=3, slack_dims=2, dft_path=dft_path)
    out = tmp_path / "onnx"
    if dft_path == "fft":
        report = export_onnx(checkpoint, out)
        assert report == json.loads((out / "onnx_export.json").read_text())
    else:  # the same through the console entry
        assert cli_main(["export-onnx", str(checkpoint), str(out)]) == 0
        report = json.loads((out / "onnx_export.json").read_text())
        assert cli_main(["export-onnx", str(checkpoint), str(out)]) == 2  # no overwrite of an export by default
    assert report["dft_path"]["exported_resolved"] == dft_path and report["max_abs_error"] < TOLERANCE
    names, dims, outputs, ops = graph_summary(out)
    assert names == ["input_ids", "attention_mask", "token_type_ids"] and outputs == ["logits"]
    assert all(d == ["batch", "sequence"] for d in dims)
    # The path really is the one claimed: the ONNX DFT operator, or G stored as a matrix.
    assert ("DFT" in ops) == (dft_path == "fft")
    assert gale_constant_in_graph(out, 30, 3) == (dft_path == "matmul")

    # The exported tokenizer feeds the graph directly: sentence pairs (two segments), padded, two batch sizes.
    tokenizer = AutoTokenizer.from_pretrained(out)
    for batch, seed in ((1, 0), (6, 1)):
        first, second = sentence_pairs(batch, seed)
        encoded = tokenizer(first, second, padding=True, return_tensors="np")
        assert set(encoded) == set(names)
        assert_graph_matches_pytorch(checkpoint, out, {name: encoded[name].astype(np.int64) for name in names})
    assert_graph_matches_pytorch(checkpoint, out, random_inputs(names, 4, 33, seed=2))
    assert AutoConfig.from_pretrained(out).id2label == AutoConfig.from_pretrained(checkpoint).id2label


@pytest.mark.slow
def test_fft_checkpoint_exported_as_matmul_with_external_weights(tmp_path, monkeypatch):
    # dft_path switches the exported path; the check still compares with the checkpoint's FFT path in PyTorch.
    checkpoint = make_checkpoint(tmp_path / "ckpt", head_kind="dft", k=4, slack_dims=0, dft_path="fft")
    monkeypatch.setattr(onnx_export, "EXTERNAL_DATA_BYTES", 0)  # as for a model over 1.5 GiB
    report = export_onnx(checkpoint, tmp_path / "onnx", dft_path="matmul")
    out = tmp_path / "onnx"
    assert report["dft_path"] == {
        "checkpoint": "fft",
        "checkpoint_resolved": "fft",
        "exported": "matmul",
        "exported_resolved": "matmul",
    }
    assert "DFT" not in graph_summary(out)[3] and gale_constant_in_graph(out, 30, 4)
    assert (out / "model.onnx.data").stat().st_size > (out / "model.onnx").stat().st_size
    names = graph_summary(out)[0]
    for batch, length, seed in ((2, 3, 0), (5, 17, 1)):
        assert_graph_matches_pytorch(checkpoint, out, random_inputs(names, batch, length, seed))
    assert AutoModel.from_pretrained(checkpoint).config.dft_path == "fft"  # the checkpoint is not changed


@pytest.mark.parametrize(
    "family,type_vocab_size,expected",
    [("bert", 2, True), ("roberta", 1, False), ("roberta", 2, True), ("distilbert", None, False)],
)
def test_token_type_ids_are_an_input_only_when_they_change_the_logits(family, type_vocab_size, expected):
    config = tiny_encoder_config(family)
    if type_vocab_size is not None:
        config.type_vocab_size = type_vocab_size  # released RoBERTa checkpoints have 1, RobertaConfig's default is 2
    model = DFTForMultiLabelClassification.from_encoder(AutoModel.from_config(config), num_labels=30, k=3)
    assert ("token_type_ids" in graph_input_names(model)) is expected
    if expected:  # a second segment embedding does move the logits
        ids = torch.randint(5, 120, (2, 6))
        with torch.no_grad():
            zeros = model.eval()(ids, token_type_ids=torch.zeros_like(ids)).logits
            ones = model(ids, token_type_ids=torch.ones_like(ids)).logits
        assert not torch.allclose(zeros, ones)


def file_hashes(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.mark.slow
def test_dense_head_without_token_types_and_a_failed_check_keeps_the_earlier_export(tmp_path, monkeypatch):
    first = make_checkpoint(tmp_path / "first", family="distilbert", tokenizer=False, head_kind="dense")
    out = tmp_path / "onnx"
    out.mkdir()
    monkeypatch.chdir(out)
    report = export_onnx(first, ".")  # an empty folder is filled, even the working directory
    names, dims, outputs, _ = graph_summary(out)
    assert names == ["input_ids", "attention_mask"] and outputs == ["logits"]  # DistilBERT takes no segments
    assert report["dft_path"] is None and report["tokenizer"] is False
    # No tokenizer; the config with its code (AutoConfig loads it without the package), the graph, the report.
    expected_files = ["config.json", "configuration.py", "gale.py", "model.onnx", "onnx_export.json"]
    assert sorted(p.name for p in out.iterdir()) == expected_files
    for batch, length, seed in ((1, 4, 0), (7, 21, 1)):
        assert_graph_matches_pytorch(first, out, random_inputs(names, batch, length, seed))

    # A graph that computes something else (here: the first model's, for a second checkpoint) fails the check,
    # and the earlier export survives the failed overwrite.
    second = make_checkpoint(tmp_path / "second", family="distilbert", tokenizer=False, seed=1, head_kind="dense")
    before = file_hashes(out)

    def export_the_wrong_graph(model, path, names, opset):
        path.write_bytes((out / "model.onnx").read_bytes())

    monkeypatch.setattr(onnx_export, "export_graph", export_the_wrong_graph)
    with pytest.raises(OnnxExportError, match="differ from PyTorch's by up to"):
        export_onnx(second, out, overwrite=True)
    assert file_hashes(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["first", "onnx", "second"]  # no partial folder left


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    return make_checkpoint(tmp_path / "ckpt", tokenizer=False, head_kind="dft", k=3)


def test_bad_checkpoints_are_refused(tmp_path, checkpoint):
    with pytest.raises(ValueError, match="does not exist"):
        export_onnx(tmp_path / "nowhere", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="has no config.json"):
        export_onnx(tmp_path / "empty", tmp_path / "out")
    stock = BertForSequenceClassification(tiny_encoder_config("bert"))
    stock.save_pretrained(tmp_path / "stock")
    with pytest.raises(ValueError, match="not an hf_dft_head checkpoint"):
        export_onnx(tmp_path / "stock", tmp_path / "out")
    with pytest.raises(ValueError, match="dft_path must be one of"):
        export_onnx(checkpoint, tmp_path / "out", dft_path="fast")
    with pytest.raises(ValueError, match="opset must be at least 18"):
        export_onnx(checkpoint, tmp_path / "out", opset=17)
    for tolerance in (-1e-4, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="tolerance must be a finite number >= 0"):
            export_onnx(checkpoint, tmp_path / "out", tolerance=tolerance)
    dense = make_checkpoint(tmp_path / "dense", tokenizer=False, head_kind="dense")
    with pytest.raises(ValueError, match="DFT heads only"):
        export_onnx(dense, tmp_path / "out", dft_path="fft")
    assert not (tmp_path / "out").exists()


def test_existing_outputs_are_never_overwritten_by_accident(tmp_path, checkpoint):
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="already exists and is not empty: pass overwrite=True"):
        export_onnx(checkpoint, taken)
    with pytest.raises(ValueError, match="not an earlier export"):
        export_onnx(checkpoint, taken, overwrite=True)  # --overwrite replaces earlier exports only
    assert (taken / "notes.txt").read_text() == "mine"
    (tmp_path / "file.onnx").write_text("x")
    with pytest.raises(ValueError, match="is a file, not a folder"):
        export_onnx(checkpoint, tmp_path / "file.onnx", overwrite=True)
    before = file_hashes(checkpoint)
    for folder in (checkpoint, tmp_path):  # the checkpoint itself, or a folder holding it
        (folder / "onnx_export.json").write_text("{}")
        with pytest.raises(ValueError, match="holds the checkpoint"):
            export_onnx(checkpoint, folder, overwrite=True)
        (folder / "onnx_export.json").unlink()
    assert file_hashes(checkpoint) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt", "file.onnx", "taken"]


def test_export_failure_is_reported_as_onnx_export_error(tmp_path, checkpoint, monkeypatch):
    def broken_export(*args, **kwargs):
        raise RuntimeError("outer") from NotImplementedError("No ONNX function found for aten.mystery_op")

    monkeypatch.setattr(torch.onnx, "export", broken_export)
    with pytest.raises(OnnxExportError, match="NotImplementedError: No ONNX function found for aten.mystery_op"):
        export_onnx(checkpoint, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]
