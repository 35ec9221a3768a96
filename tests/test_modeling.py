"""The model over real encoder architectures: Auto classes, save/load, remote code, bad input."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from conftest import ENCODER_FAMILIES, tiny_encoder_config
from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification, AutoTokenizer

import hf_dft_head
from hf_dft_head import DFTConfig, DFTForMultiLabelClassification
from hf_dft_head.convert import convert_sequence_classifier


def tiny_model(family: str, head_kind: str = "dft", **kwargs) -> DFTForMultiLabelClassification:
    torch.manual_seed(0)
    encoder = AutoModel.from_config(tiny_encoder_config(family))
    defaults = {"num_labels": 30, "k": 3, "slack_dims": 2, "head_kind": head_kind}
    return DFTForMultiLabelClassification.from_encoder(encoder, **{**defaults, **kwargs})


def batch(vocab: int = 120, size: int = 3, length: int = 9) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(5)
    ids = torch.randint(5, vocab, (size, length), generator=gen)
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0  # one padded row, so mean pooling and attention masks matter
    return {"input_ids": ids, "attention_mask": mask}


@pytest.mark.parametrize("family", ENCODER_FAMILIES)
@pytest.mark.parametrize("head_kind,pooling", [("dft", "cls"), ("dft", "mean"), ("bottleneck", "cls")])
def test_round_trip_with_auto_classes(family, head_kind, pooling, tmp_path):
    model = tiny_model(family, head_kind, pooling=pooling).eval()
    inputs = batch()
    with torch.no_grad():
        logits = model(**inputs).logits
    assert logits.shape == (3, 30)
    model.save_pretrained(tmp_path)
    for auto_class in (AutoModel, AutoModelForSequenceClassification):
        again = auto_class.from_pretrained(tmp_path).eval()
        assert type(again) is DFTForMultiLabelClassification
        with torch.no_grad():
            torch.testing.assert_close(again(**inputs).logits, logits, rtol=0, atol=0)
    assert AutoConfig.from_pretrained(tmp_path).encoder.model_type == model.config.encoder.model_type


def test_loss_is_bce_with_logits_for_float_and_int_labels():
    model = tiny_model("bert").eval()
    inputs = batch()
    labels = torch.zeros(3, 30, dtype=torch.long)
    labels[0, [1, 4]] = 1
    labels[2, 29] = 1
    out_int = model(**inputs, labels=labels)
    out_float = model(**inputs, labels=labels.float())
    expected = torch.nn.functional.binary_cross_entropy_with_logits(out_int.logits, labels.float())
    torch.testing.assert_close(out_int.loss, expected)
    torch.testing.assert_close(out_float.loss, expected)
    out_int.loss.backward()
    assert model.head.weight.grad is not None and model.head.weight.grad.abs().sum() > 0


def test_encoder_features_path_matches_full_forward():
    model = tiny_model("roberta", pooling="mean").eval()
    inputs = batch()
    with torch.no_grad():
        features = model.encode(**inputs)
        torch.testing.assert_close(model(encoder_features=features).logits, model(**inputs).logits)


def test_freeze_encoder_and_no_pooler():
    model = tiny_model("bert", freeze_encoder=True)
    assert all(not p.requires_grad for p in model.encoder.parameters())
    assert all(p.requires_grad for p in model.head.parameters())
    assert getattr(model.encoder, "pooler", None) is None  # an unused pooler breaks DDP gradient sync
    out = model(**batch(), labels=torch.ones(3, 30))
    out.loss.backward()
    assert all(p.grad is None for p in model.encoder.parameters())


def test_pretrained_minilm_round_trip_and_prior(minilm_path, tmp_path):
    id2label = {i: f"label_{i}" for i in range(35)}
    model = DFTForMultiLabelClassification.from_encoder_pretrained(
        minilm_path, id2label=id2label, k=5, slack_dims=4, encoder_kwargs={"num_hidden_layers": 2}
    ).eval()
    # the encoder's pretrained weights are really there (not re-initialised)
    reference = AutoModel.from_pretrained(minilm_path, num_hidden_layers=2)
    torch.testing.assert_close(
        model.encoder.embeddings.word_embeddings.weight, reference.embeddings.word_embeddings.weight
    )
    tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    inputs = tokenizer(["we need water", "the bridge collapsed after the flood"], padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(**inputs).logits
    assert logits.mean().item() == pytest.approx(math.log(5 / 30), abs=0.1)
    model.save_pretrained(tmp_path)
    again = AutoModel.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        torch.testing.assert_close(again(**inputs).logits, logits, rtol=0, atol=0)
    assert again.config.id2label[34] == "label_34" and again.config.label2id["label_3"] == 3


REMOTE_SCRIPT = textwrap.dedent(
    """
    import json, sys
    sys.modules["hf_dft_head"] = None  # importing the package now raises ImportError
    import torch
    from transformers import AutoModel, AutoModelForSequenceClassification
    try:
        import hf_dft_head  # noqa: F401
        raise SystemExit("hf_dft_head must not be importable here")
    except ImportError:
        pass
    ckpt, inputs = sys.argv[1], json.loads(sys.argv[2])
    inputs = {key: torch.tensor(value) for key, value in inputs.items()}
    out = {}
    for auto_class in (AutoModel, AutoModelForSequenceClassification):
        model = auto_class.from_pretrained(ckpt, trust_remote_code=True).eval()
        assert "hf_dft_head" not in type(model).__module__, type(model).__module__
        with torch.no_grad():
            out[auto_class.__name__] = model(**inputs).logits.tolist()
    print(json.dumps(out))
    """
)


@pytest.mark.parametrize("family", ["bert", "modernbert"])
def test_remote_code_load_without_the_package(family, tmp_path):
    model = tiny_model(family).eval()
    inputs = batch()
    with torch.no_grad():
        logits = model(**inputs).logits.numpy()
    model.save_pretrained(tmp_path / "ckpt")
    saved = sorted(p.name for p in (tmp_path / "ckpt").iterdir())
    assert {"modeling.py", "configuration.py", "layers.py", "gale.py"} <= set(saved)
    auto_map = json.loads((tmp_path / "ckpt" / "config.json").read_text())["auto_map"]
    assert auto_map["AutoModel"] == "modeling.DFTForMultiLabelClassification"
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            REMOTE_SCRIPT,
            str(tmp_path / "ckpt"),
            json.dumps({k: v.tolist() for k, v in inputs.items()}),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,  # not the repository: nothing local to import from
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    for name in ("AutoModel", "AutoModelForSequenceClassification"):
        np.testing.assert_array_equal(np.array(out[name], dtype=np.float32), logits)


def test_convert_stock_multilabel_classifier(tmp_path):
    from transformers import BertForSequenceClassification

    torch.manual_seed(0)
    config = tiny_encoder_config("bert")
    config.num_labels = 25
    config.problem_type = "multi_label_classification"
    config.id2label = {i: f"code_{i}" for i in range(25)}
    stock = BertForSequenceClassification(config)
    stock.save_pretrained(tmp_path / "stock")
    model = convert_sequence_classifier(tmp_path / "stock", k=4, slack_dims=3)
    assert model.config.id2label == config.id2label and model.config.k == 4
    torch.testing.assert_close(
        model.encoder.embeddings.word_embeddings.weight, stock.bert.embeddings.word_embeddings.weight
    )
    torch.testing.assert_close(
        model.encoder.encoder.layer[1].output.dense.weight, stock.bert.encoder.layer[1].output.dense.weight
    )
    assert model(**batch()).logits.shape == (3, 25)
    with pytest.raises(ValueError, match="sigmoid"):
        single = BertForSequenceClassification(tiny_encoder_config("bert"))
        single.config.problem_type = "single_label_classification"
        convert_sequence_classifier(single, k=2)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"k": 0}, r"k \(the guaranteed sparsity\) must be an integer >= 1"),
        ({"k": 20, "num_labels": 30}, r"2k\+1\+slack_dims = 41 exceeds num_labels = 30"),
        (
            {"k": 24, "num_labels": 100},
            r"2k\+1\+slack_dims = 49 exceeds the encoder hidden size 48.*guarantee would not transfer",
        ),
        ({"k": 10, "slack_dims": 30, "num_labels": 100}, r"exceeds the encoder hidden size 48"),
        ({"num_labels": 5, "id2label": {0: "a", 1: "b"}}, r"id2label has 2 entries but num_labels=5"),
        ({"head_kind": "softmax"}, r"head_kind must be one of"),
        ({"pooling": "max"}, r"pooling must be one of"),
    ],
)
def test_bad_configuration_fails_at_construction(kwargs, message):
    encoder = AutoModel.from_config(tiny_encoder_config("bert"))
    args = {"num_labels": 30, "k": 3, **kwargs}
    with pytest.raises(ValueError, match=message):
        DFTForMultiLabelClassification.from_encoder(encoder, **args)


def test_missing_num_labels_and_wrong_label_shape(minilm_path):
    encoder = AutoModel.from_config(tiny_encoder_config("bert"))
    with pytest.raises(ValueError, match="Give num_labels or id2label"):
        DFTForMultiLabelClassification.from_encoder(encoder, k=3)
    with pytest.raises(ValueError, match="Give num_labels or id2label"):
        DFTForMultiLabelClassification.from_encoder_pretrained(minilm_path, k=3)
    model = tiny_model("bert")
    with pytest.raises(ValueError, match=r"labels must be multi-hot with shape \(batch, num_labels\) = \(3, 30\)"):
        model(**batch(), labels=torch.zeros(3, 29))
    with pytest.raises(ValueError, match=r"encoder_features must have shape \(batch, 48\)"):
        model(encoder_features=torch.zeros(3, 47))


def test_package_registers_auto_classes():
    assert AutoConfig.for_model("dft_multilabel").__class__ is DFTConfig
    config = DFTConfig(encoder=tiny_encoder_config("distilbert").to_dict(), num_labels=12, k=2)
    assert type(AutoModel.from_config(config)) is hf_dft_head.DFTForMultiLabelClassification
