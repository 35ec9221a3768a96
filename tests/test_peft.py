"""LoRA with PEFT keeps the trained head, and checkpoints written before the head was renamed still load.

PEFT's ``task_type="SEQ_CLS"`` keeps only modules named ``classifier`` or ``score`` trainable outside the LoRA
layers; the head is therefore ``model.classifier`` (``model.head`` is an alias), while checkpoint files keep the
``head.*`` key names of version 0.1.0 (``tests/fixtures/head_layout_v0_1`` was written by that code).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_encoder_config
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file
from transformers import AutoModel, AutoModelForSequenceClassification

from hf_dft_head import BottleneckHead, DenseHead, DFTForMultiLabelClassification, DFTHead, gale_matrix

FIXTURES = Path(__file__).parent / "fixtures" / "head_layout_v0_1"
HEADS = {
    "dft-slack": {"head_kind": "dft", "k": 3, "slack_dims": 2},
    "dft-no-slack": {"head_kind": "dft", "k": 4, "slack_dims": 0, "dft_path": "fft"},
    "bottleneck": {"head_kind": "bottleneck", "bottleneck_dim": 5},
    "dense": {"head_kind": "dense"},
}
HEAD_CLASSES = {"dft": DFTHead, "bottleneck": BottleneckHead, "dense": DenseHead}
ADAPTER_PREFIX = "base_model.model."


def tiny_model(**head) -> DFTForMultiLabelClassification:
    torch.manual_seed(0)
    encoder = AutoModel.from_config(tiny_encoder_config("bert"))
    return DFTForMultiLabelClassification.from_encoder(encoder, num_labels=30, **head)


def batch(size: int = 4, length: int = 9, seed: int = 5) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 120, (size, length), generator=generator)
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    return {"input_ids": ids, "attention_mask": mask}


def explicit_head_logits(model: DFTForMultiLabelClassification, features: np.ndarray) -> np.ndarray:
    """The head recomputed in float64 numpy from its parameters and ``gale_matrix``: ``(B, d)`` -> ``(B, n)``."""
    config, parts = model.config, {name: p.detach().double().numpy() for name, p in model.head.named_parameters()}
    if config.head_kind == "dense":
        return features @ parts["linear.weight"].T + parts["linear.bias"]
    if config.head_kind == "bottleneck":
        middle = features @ parts["down.weight"].T + parts["down.bias"]
        return middle @ parts["up.weight"].T + parts["up.bias"]
    x = features @ parts["weight"].T + parts["bias"]  # (B, 2k+1+s)
    width = 2 * config.k + 1
    logits = x[:, :width] @ gale_matrix(config.num_labels, config.k).T
    if config.slack_dims:
        logits = logits + x[:, width:] @ parts["dft.slack"].T
    return logits


def test_the_head_is_the_only_module_peft_keeps_by_name():
    # PEFT matches modules_to_save by name suffix: a second match inside the head would be wrapped twice.
    for head in HEADS.values():
        model = tiny_model(**head)
        kept = [name for name, _ in model.named_modules() if name.endswith(("classifier", "score"))]
        assert kept == ["classifier"], (head, kept)
        assert model.head is model.classifier


def test_checkpoint_files_keep_the_head_key_names():
    # In memory the head is `classifier` (the dense head's map `linear`); files keep the 0.1.0 names.
    expected = {
        "dft-slack": ["head.bias", "head.dft.slack", "head.weight"],
        "bottleneck": ["head.down.bias", "head.down.weight", "head.up.bias", "head.up.weight"],
        "dense": ["head.classifier.bias", "head.classifier.weight"],
    }
    for name, keys in expected.items():
        model = tiny_model(**HEADS[name])
        in_memory = sorted(k for k in model.state_dict() if not k.startswith("encoder."))
        assert in_memory == sorted(
            k.replace("head.classifier.", "classifier.linear.").replace("head.", "classifier.") for k in keys
        )
        with tempfile.TemporaryDirectory() as folder:
            model.save_pretrained(folder)
            assert sorted(k for k in load_file(f"{folder}/model.safetensors") if not k.startswith("encoder.")) == keys


def test_assigning_head_replaces_the_classifier():
    model = tiny_model(head_kind="dense").eval()
    new_head = DenseHead(48, 30)
    model.head = new_head
    assert model.classifier is new_head and model.head is new_head
    assert [name for name, _ in model.named_children()] == ["encoder", "dropout", "classifier"]
    with torch.no_grad():
        features = model.encode(**batch())
        torch.testing.assert_close(model(encoder_features=features).logits, new_head(features))


@pytest.mark.parametrize("name", list(HEADS))
def test_lora_trains_saves_and_reloads_the_head(name, tmp_path):
    tiny_model(**HEADS[name]).save_pretrained(tmp_path / "base")
    base = DFTForMultiLabelClassification.from_pretrained(tmp_path / "base")
    # What a user writes: no word about our module names.
    model = get_peft_model(base, LoraConfig(task_type="SEQ_CLS", target_modules=["query", "value"], r=4))
    trainable = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    head_names = [n for n in trainable if n.startswith(ADAPTER_PREFIX + "classifier.")]
    assert head_names, f"PEFT left the head frozen: trainable = {sorted(trainable)}"

    inputs, labels = batch(), torch.zeros(4, 30)
    labels[0, [1, 7]] = labels[2, 29] = labels[3, 0] = 1
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    torch.manual_seed(1)
    model.train()
    for _ in range(3):
        model(**inputs, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    params = dict(model.named_parameters())
    assert all(not torch.equal(params[n], trainable[n]) for n in trainable), "a trainable parameter did not move"
    assert all(torch.equal(params[n], frozen[n]) for n in frozen), "a frozen parameter moved"
    with torch.no_grad():
        logits = model(**inputs).logits

    model.save_pretrained(tmp_path / "adapter")
    saved = load_file(str(tmp_path / "adapter" / "adapter_model.safetensors"))
    trained_head = {n: p.detach() for n, p in model.head.modules_to_save["default"].named_parameters()}
    assert set(trained_head) == {n for n, _ in base.head.original_module.named_parameters()}
    for parameter_name, value in trained_head.items():  # the trained head, not the initial one, is in the adapter
        assert torch.equal(saved[f"{ADAPTER_PREFIX}classifier.{parameter_name}"], value)
    assert not any("gale" in key for key in saved)  # G is fixed, recomputed from (n, k), never stored

    fresh = DFTForMultiLabelClassification.from_pretrained(tmp_path / "base")
    reloaded = PeftModel.from_pretrained(fresh, tmp_path / "adapter").eval()
    with torch.no_grad():
        assert torch.equal(reloaded(**inputs).logits, logits)

    merged = reloaded.merge_and_unload()
    assert type(merged) is DFTForMultiLabelClassification
    assert type(merged.head) is HEAD_CLASSES[HEADS[name]["head_kind"]]
    with torch.no_grad():
        # W + s B A rounds differently from W x + s B (A x): equal to float32 rounding, not bit for bit.
        torch.testing.assert_close(merged(**inputs).logits, logits, rtol=1e-6, atol=1e-6)
        features = merged.encode(**inputs).double().numpy()
        reference = explicit_head_logits(merged, features)  # the head by hand, G from gale_matrix
        np.testing.assert_allclose(merged(**inputs).logits.double().numpy(), reference, rtol=0, atol=1e-5)
    merged.save_pretrained(tmp_path / "merged")
    again = AutoModelForSequenceClassification.from_pretrained(tmp_path / "merged").eval()
    with torch.no_grad():
        assert torch.equal(again(**inputs).logits, merged(**inputs).logits)


def fixture_inputs(name: str) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    expected = json.loads((FIXTURES / name / "expected.json").read_text())
    logits = torch.tensor(expected.pop("logits"), dtype=torch.float32)
    return {key: torch.tensor(value) for key, value in expected.items()}, logits


REMOTE_SCRIPT = textwrap.dedent(
    """
    import json, sys
    sys.modules["hf_dft_head"] = None  # the package cannot be imported: the checkpoint's own code must load it
    import torch
    from transformers import AutoModelForSequenceClassification
    out = {}
    for folder in sys.argv[1:]:
        inputs = json.load(open(folder + "/expected.json"))
        inputs.pop("logits")
        model = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True).eval()
        assert "hf_dft_head" not in type(model).__module__
        with torch.no_grad():
            out[folder] = model(**{key: torch.tensor(value) for key, value in inputs.items()}).logits.tolist()
    print(json.dumps(out))
    """
)


def test_checkpoints_of_the_old_layout_load_and_resave_unchanged(tmp_path):
    resaved_folders = []
    for name in ("dft", "bottleneck", "dense"):
        folder = FIXTURES / name
        original = load_file(str(folder / "model.safetensors"))
        assert any(key.startswith("head.") for key in original)
        inputs, expected = fixture_inputs(name)

        model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
        assert type(model) is DFTForMultiLabelClassification  # the package's code, not the checkpoint's copy
        old_names = {"linear.weight": "classifier.weight", "linear.bias": "classifier.bias"}  # the dense head's
        for parameter_name, value in model.head.state_dict().items():
            assert torch.equal(value, original["head." + old_names.get(parameter_name, parameter_name)])
        with torch.no_grad():
            logits = model(**inputs).logits
        # Logits of the 0.1.0 code, recorded on another run: equal up to the machine's float32 matmul rounding.
        torch.testing.assert_close(logits, expected, rtol=0, atol=1e-6)

        model.save_pretrained(tmp_path / name)
        resaved = load_file(str(tmp_path / name / "model.safetensors"))
        assert resaved.keys() == original.keys()
        assert all(torch.equal(resaved[key], original[key]) for key in original)
        again = AutoModel.from_pretrained(tmp_path / name).eval()
        with torch.no_grad():
            assert torch.equal(again(**inputs).logits, logits)
        shutil.copy(folder / "expected.json", tmp_path / name / "expected.json")
        resaved_folders.append(str(tmp_path / name))

    # The resaved folders carry the new code: loaded as remote code, without the package, the logits are the same.
    result = subprocess.run(
        [sys.executable, "-c", REMOTE_SCRIPT, *resaved_folders],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    remote = json.loads(result.stdout.strip().splitlines()[-1])
    for name, folder in zip(("dft", "bottleneck", "dense"), resaved_folders):
        inputs, _ = fixture_inputs(name)
        model = AutoModel.from_pretrained(folder).eval()
        with torch.no_grad():
            np.testing.assert_array_equal(np.array(remote[folder], dtype=np.float32), model(**inputs).logits.numpy())
