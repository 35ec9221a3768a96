"""The ``multi-label-classification`` pipeline: registration, our three head kinds, stock models, Hub ids, bad input.

References: the model's own logits thresholded by hand (``test_predict.by_hand``), sign changes counted by hand in
circle order, and a fresh interpreter for the registration that ``import hf_dft_head`` performs.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from hub_fixtures import DEFAULT_USER, hub_server_fixture  # noqa: F401
from huggingface_hub import HfApi
from test_predict import (
    N_LABELS,
    ORDER,
    K,
    by_hand,
    hand_sign_changes,
    reference_logits,
    stock_model,
    texts,
    tiny_model,
    tokenizer,
)
from transformers import pipeline
from transformers.pipelines import PIPELINE_REGISTRY

from hf_dft_head import MultiLabelClassificationPipeline
from hf_dft_head.pipeline import TASK, register_pipeline
from hf_dft_head.predict import PredictArguments, run_predict


def save(model, folder: Path) -> Path:
    model.save_pretrained(folder)
    tokenizer().save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("pipeline")
    saved = {kind: save(tiny_model(kind), root / kind) for kind in ("dft", "bottleneck", "dense")}
    saved["stock"] = save(stock_model(), root / "stock")
    return saved


def expected_outputs(model, items: list[str], threshold_logit: float = 0.0, top_k: int | None = None) -> list[dict]:
    """What the pipeline must return, computed from the model's logits by hand."""
    rows = []
    for row in reference_logits(model, items):
        names, scores = by_hand(row, np.full(N_LABELS, threshold_logit))
        names, scores = names[:top_k], scores[:top_k]
        flag = None
        if getattr(model.config, "head_kind", None) == "dft":
            flag = hand_sign_changes(names, ORDER) <= 2 * K
        rows.append({"labels": names, "scores": scores, "within_guarantee": flag})
    return rows


def assert_outputs(actual: list[dict], expected: list[dict]) -> None:
    assert [(a["labels"], a["within_guarantee"]) for a in actual] == [
        (e["labels"], e["within_guarantee"]) for e in expected
    ]
    for a, e in zip(actual, expected):
        np.testing.assert_allclose(a["scores"], e["scores"], rtol=0, atol=1e-5)


@pytest.mark.parametrize("kind", ["dft", "bottleneck", "dense", "stock"])
def test_pipeline_from_a_saved_folder_matches_the_logits(folders, kind):
    reference = stock_model() if kind == "stock" else tiny_model(kind)
    classify = pipeline(TASK, model=str(folders[kind]))
    assert isinstance(classify, MultiLabelClassificationPipeline)
    items = texts(9)
    outputs = classify(items, batch_size=4)
    assert_outputs(outputs, expected_outputs(reference, items))
    assert {o["within_guarantee"] is None for o in outputs} == {kind != "dft"}
    single = classify(items[0])  # one string in, one dict out
    assert_outputs([single], expected_outputs(reference, items[:1]))


def test_pipeline_call_options_threshold_and_top_k(folders):
    classify = pipeline(TASK, model=str(folders["dft"]))
    model, items = tiny_model(), texts(12)
    assert_outputs(classify(items, threshold=0.8), expected_outputs(model, items, threshold_logit=np.log(4.0)))
    assert_outputs(classify(items, top_k=9), expected_outputs(model, items, top_k=9))
    # Options given to pipeline(...) are the defaults of every call.
    capped = pipeline(TASK, model=str(folders["dft"]), threshold=0.0, top_k=3)
    for output, row in zip(capped(items), reference_logits(model, items)):
        assert output["labels"] == [f"label_{i:02d}" for i in np.argsort(-row, kind="stable")[:3]]


def test_pipeline_honours_the_checkpoint_logit_thresholds(tmp_path):
    thresholds = np.random.default_rng(5).uniform(-2.0, 2.0, N_LABELS)
    model = tiny_model(logit_thresholds=thresholds.tolist())
    classify = pipeline(TASK, model=str(save(model, tmp_path / "thresholds")))
    items = texts(10)
    outputs = classify(items)
    for output, row in zip(outputs, reference_logits(model, items)):
        assert output["labels"] == by_hand(row, thresholds)[0]
        # Finite thresholds keep every set of the guarantee outputtable: the flag is still the rule.
        assert isinstance(output["within_guarantee"], bool)
    assert [o["labels"] for o in classify(items, threshold=0.5)] == [
        by_hand(row, np.zeros(N_LABELS))[0] for row in reference_logits(model, items)
    ]


def test_pipeline_refuses_models_without_sigmoid_outputs(tmp_path):
    with pytest.raises(ValueError, match="single-label \\(softmax\\) classifier"):
        pipeline(TASK, model=str(save(stock_model("single_label_classification"), tmp_path / "single")))
    untyped = str(save(stock_model(None), tmp_path / "untyped"))
    with pytest.raises(ValueError, match="no problem_type.*assume_multi_label=True"):
        pipeline(TASK, model=untyped)
    assert len(pipeline(TASK, model=untyped, assume_multi_label=True)(["need help"])) == 1


@pytest.mark.parametrize(
    "call,message",
    [
        ({"threshold": 2}, r"threshold is a probability in \[0, 1\], got 2"),
        ({"top_k": 0}, r"top_k must be an integer >= 1"),
        ({"max_length": 1}, r"max_length must be an integer >= 2"),
        ({"treshold": 0.3}, r"Unknown argument\(s\) \['treshold'\].*threshold, top_k and max_length"),
    ],
)
def test_pipeline_bad_options(folders, call, message):
    classify = pipeline(TASK, model=str(folders["dft"]))
    with pytest.raises(ValueError, match=message):
        classify("need help", **call)


def test_pipeline_inputs(folders):
    classify = pipeline(TASK, model=str(folders["dft"]))
    assert classify([]) == []
    with pytest.raises(ValueError, match=r"inputs\[1\] is a int, not a string"):
        classify(["need help", 3])
    with pytest.raises(ValueError, match="takes a string or a list of strings, got dict"):
        classify({"text": "need help"})


def test_registration_is_idempotent(caplog):
    with caplog.at_level(logging.WARNING):
        register_pipeline()
        register_pipeline()
    assert "already registered" not in caplog.text
    assert PIPELINE_REGISTRY.supported_tasks[TASK]["impl"] is MultiLabelClassificationPipeline


PLUGIN_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import hf_dft_head  # registers the task; nothing else is set up in this interpreter
    from transformers import pipeline

    classify = pipeline("multi-label-classification", model=sys.argv[1])
    print(json.dumps([type(classify).__name__, classify(json.loads(sys.argv[2]), top_k=5)]))
    """
)


def test_pipeline_in_a_fresh_process_with_the_plugin(folders, tmp_path):
    items = texts(6)
    result = subprocess.run(
        [sys.executable, "-c", PLUGIN_SCRIPT, str(folders["dft"]), json.dumps(items)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    name, outputs = json.loads(result.stdout.strip().splitlines()[-1])
    assert name == "MultiLabelClassificationPipeline"
    assert_outputs(outputs, expected_outputs(tiny_model(), items, top_k=5))


def test_pipeline_and_hf_dft_predict_from_a_hub_repo(hub_server, folders):
    repo_id = f"{DEFAULT_USER}/tiny-dft"
    api = HfApi()
    api.create_repo(repo_id)
    api.upload_folder(folder_path=str(folders["dft"]), repo_id=repo_id)
    items = texts(5)
    expected = expected_outputs(tiny_model(), items)
    assert_outputs(pipeline(TASK, model=repo_id)(items), expected)
    assert_outputs([p.to_dict() for p in run_predict(repo_id, items, PredictArguments(), stream=None)], expected)
