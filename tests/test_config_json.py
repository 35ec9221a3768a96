"""config.json of a DFT checkpoint: DFTConfig's flat coding of the label-sized fields equals transformers' walk.

transformers tags infinite and NaN floats as ``{"__float__": "Infinity"}`` when it writes a config and untags them
when it reads one, walking every value in Python. DFTConfig does the label-sized fields (one entry per label) in
one flat pass; these tests hold it to the reference, ``PretrainedConfig``'s own walk, on the awkward values.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from conftest import tiny_encoder_config
from transformers import PretrainedConfig

from hf_dft_head import DFTConfig
from hf_dft_head.configuration import REPR_MAX_LABELS
from hf_dft_head.sigmoid_head import model_label_names


def _same(a, b) -> bool:
    """Equal values, NaN equal to NaN, and the same types (a float stays a float, an int an int)."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return type(a) is type(b) and a == b


def _tagged(tag: str) -> dict:
    return {"__float__": tag}


def _raw_config(n: int = 40) -> dict:
    """A config dict as json.loads returns it, with every kind of value the label-sized fields can hold."""
    thresholds = [0.25 * i - 3 for i in range(n)]
    thresholds[3], thresholds[7], thresholds[11] = _tagged("Infinity"), _tagged("-Infinity"), _tagged("NaN")
    thresholds[13] = _tagged("not-a-tag")  # an unknown tag stays as it is
    id2label = {str(i): f"label {i}" for i in range(n)}
    id2label["5"] = _tagged("Infinity")  # a label named by a tagged float: transformers decodes it, so must we
    return {
        "model_type": "dft_multilabel",
        "k": 3,
        "encoder": {"model_type": "bert", "layer_norm_eps": _tagged("-Infinity"), "id2label": {"0": "a"}},
        "id2label": id2label,
        "label2id": {f"label {i}": i for i in range(n)} | {"flag": True, "none": None},
        "label_order": list(range(n))[::-1],
        "logit_thresholds": thresholds,
        "nested": [[_tagged("NaN"), 1.5], {"x": _tagged("Infinity")}],
    }


def test_decoding_equals_transformers_walk():
    raw = _raw_config()
    ours, reference = DFTConfig._decode_special_floats(raw), PretrainedConfig._decode_special_floats(raw)
    assert _same(ours, reference)
    assert math.isinf(ours["logit_thresholds"][3]) and math.isnan(ours["logit_thresholds"][11])
    assert ours["logit_thresholds"][13] == _tagged("not-a-tag") and ours["id2label"]["5"] == math.inf
    assert ours["encoder"]["layer_norm_eps"] == -math.inf


def test_encoding_equals_transformers_walk():
    decoded = PretrainedConfig._decode_special_floats(_raw_config())
    decoded["logit_thresholds"][20] = np.float64(np.inf)  # numpy floats are floats to the walk too
    decoded["logit_thresholds"][21] = np.float64(0.5)
    ours, reference = DFTConfig._encode_special_floats(decoded), PretrainedConfig._encode_special_floats(decoded)
    assert json.dumps(ours, allow_nan=False) == json.dumps(reference, allow_nan=False)
    assert ours["logit_thresholds"][20] == _tagged("Infinity") and ours["logit_thresholds"][11] == _tagged("NaN")
    # The input is not changed in place (transformers' walk builds new containers; so must the flat pass).
    assert math.isnan(decoded["logit_thresholds"][11]) and ours["id2label"] is not decoded["id2label"]


def test_infinite_thresholds_survive_save_and_load_as_standard_json(tmp_path):
    n = 30
    thresholds = [0.0] * n
    thresholds[2], thresholds[9] = math.inf, -math.inf
    config = DFTConfig(
        encoder=tiny_encoder_config("bert").to_dict(),
        k=2,
        id2label={i: f"code {i}" for i in range(n)},
        logit_thresholds=thresholds,
    )
    config.save_pretrained(tmp_path)
    text = (tmp_path / "config.json").read_text(encoding="utf-8")

    def refuse(constant):
        raise ValueError(f"non-standard JSON constant {constant}")

    stored = json.loads(text, parse_constant=refuse)  # no bare Infinity / NaN in the file
    assert stored["logit_thresholds"][2] == _tagged("Infinity") and stored["logit_thresholds"][9] == _tagged(
        "-Infinity"
    )
    again = DFTConfig.from_pretrained(tmp_path)
    assert again.logit_thresholds == thresholds and again.id2label == config.id2label
    assert again.label2id == {f"code {i}": i for i in range(n)}


@pytest.mark.parametrize("n", [REPR_MAX_LABELS, REPR_MAX_LABELS + 1, 5000])
def test_repr_is_short_past_the_limit_and_transformers_below(n):
    config = DFTConfig(
        encoder=tiny_encoder_config("bert").to_dict(),
        k=2,
        id2label={i: f"code-{i:05d}" for i in range(n)},
        label_order=list(range(n))[::-1],
    )
    text = repr(config)
    if n <= REPR_MAX_LABELS:
        assert text == PretrainedConfig.__repr__(config)
        return
    assert f"code-{n // 2:05d}" not in text and len(text) < 5000
    assert f"<{n} entries: 'code-00000', 'code-00001', ..., 'code-{n - 1:05d}'>" in text
    assert f"<{n} entries: {n - 1}, {n - 2}, ..., 0>" in text
    shown = json.loads(text.split(" ", 1)[1])
    assert shown["k"] == 2 and shown["head_kind"] == "dft" and shown["encoder"]["model_type"] == "bert"


@pytest.mark.parametrize(
    "id2label, n, expected",
    [
        ({0: "a", 1: "b", 2: "c"}, 3, ["a", "b", "c"]),
        ({"1": "b", 0: 7}, 3, ["7", "b", "LABEL_2"]),  # string ids (a hand-written config), a non-string name
        ({0: "a", 5: "f"}, 2, ["a", "LABEL_1"]),  # as many entries as labels, one of them out of range
        ({}, 2, ["LABEL_0", "LABEL_1"]),
    ],
)
def test_model_label_names_fill_unnamed_ids(id2label, n, expected):
    class Config:
        pass

    config = Config()
    config.id2label = id2label
    assert model_label_names(config, n) == expected
