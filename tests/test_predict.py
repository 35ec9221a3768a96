"""Predicting label sets: model.predict / predict_label_sets, the guarantee flag, thresholds, top_k, hf-dft predict.

Independent references: the model's own logits from one plain forward pass, sigmoid in torch float64, thresholds
applied by hand, and sign changes counted by hand on a 0/1 circle built from ``label_order``.
"""

from __future__ import annotations

import io
import json
import math
import os
import stat
import subprocess
import sys
import textwrap
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification, BertModel, BertTokenizerFast, HfArgumentParser

from hf_dft_head import DFTForMultiLabelClassification, LabelSetPrediction, predict_label_sets
from hf_dft_head.argmax.label_sets import from_multi_hot
from hf_dft_head.argmax.rule import rule_argmaxable
from hf_dft_head.checkpoints import CheckpointError
from hf_dft_head.gale import circle_sign_changes
from hf_dft_head.predict import PredictArguments, read_texts, run_predict

WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [
    "need", "help", "flood", "fire", "the", "now", "water", "food", "road", "bridge", "medical", "storm", "power",
    "shelter", "children", "school", "village", "rain", "wind", "doctor", "fuel", "closed", "people", "trapped",
]  # fmt: skip
N_LABELS, K = 14, 2
LABELS = [f"label_{i:02d}" for i in range(N_LABELS)]
#: A fixed non-identity circle order: label i sits at position ORDER[i].
ORDER = [3, 11, 0, 7, 13, 5, 1, 9, 12, 2, 6, 10, 4, 8]


def tokenizer() -> BertTokenizerFast:
    return BertTokenizerFast(vocab={word: i for i, word in enumerate(WORDS)})


def tiny_encoder(seed: int = 0) -> BertModel:
    torch.manual_seed(seed)
    return BertModel(
        BertConfig(
            vocab_size=len(WORDS), hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37
        )
    )


def tiny_model(head_kind: str = "dft", seed: int = 1, **config) -> DFTForMultiLabelClassification:
    """A tiny BERT (mean pooling) + head over 14 labels, its head weights drawn large enough that the predicted sets
    vary from text to text in size and shape (for the DFT head: some within the guarantee, some not)."""
    if head_kind == "dft":
        config = {"k": K, "slack_dims": 3, "label_order": ORDER, **config}
    model = DFTForMultiLabelClassification.from_encoder(
        tiny_encoder(seed),
        id2label=dict(enumerate(LABELS)),
        head_kind=head_kind,
        bottleneck_dim=4,
        pooling="mean",
        **config,
    )
    scales = {"weight": 4.5, "bias": 0.15, "dft.slack": 0.3} if head_kind == "dft" else {}
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, parameter in model.head.named_parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * scales.get(name, 1.5))
    return model.eval()


def texts(count: int = 40, seed: int = 3) -> list[str]:
    generator = np.random.default_rng(seed)
    return [" ".join(generator.choice(WORDS[5:], size=generator.integers(1, 9))) for _ in range(count)]


def reference_logits(model, items: list[str]) -> np.ndarray:
    """Logits ``(B, n)`` float64 of one plain forward pass over all texts, no package prediction code involved."""
    batch = tokenizer()(items, padding=True, return_tensors="pt")
    with torch.no_grad():
        return model(**batch).logits.double().numpy()


def by_hand(logits_row: np.ndarray, thresholds: np.ndarray) -> tuple[list[str], list[float]]:
    """Labels with ``z_i > t_i``, highest probability first, with ``torch.sigmoid`` scores."""
    probabilities = torch.sigmoid(torch.from_numpy(logits_row)).numpy()
    ids = [i for i in range(len(logits_row)) if logits_row[i] > thresholds[i]]
    ids.sort(key=lambda i: (-probabilities[i], i))
    return [LABELS[i] for i in ids], [float(probabilities[i]) for i in ids]


def hand_sign_changes(names: list[str], order: list[int] | None) -> int:
    """Sign changes of the 0/1 circle with a 1 at the position of every label in the set, read position by position."""
    circle = [0] * N_LABELS
    for name in names:
        label = LABELS.index(name)
        circle[label if order is None else order[label]] = 1
    return sum(circle[p] != circle[p + 1] for p in range(N_LABELS - 1))


def assert_matches(predictions: list[LabelSetPrediction], logits: np.ndarray, thresholds: np.ndarray) -> None:
    assert len(predictions) == len(logits)
    for prediction, row in zip(predictions, logits):
        names, scores = by_hand(row, thresholds)
        assert prediction.labels == names
        np.testing.assert_allclose(prediction.scores, scores, rtol=0, atol=1e-5)


# ----------------------------------------------------------------------------------------------------------------
# The sign-change counter
# ----------------------------------------------------------------------------------------------------------------


def test_circle_sign_changes_by_hand_and_against_the_rule():
    generator = np.random.default_rng(0)
    indicators = generator.random((300, N_LABELS)) < generator.random((300, 1))  # sparse to dense rows
    counts = circle_sign_changes(indicators, ORDER)
    for row, count in zip(indicators, counts):
        assert count == hand_sign_changes([LABELS[i] for i in np.flatnonzero(row)], ORDER)
    # The sparse rule of the argmax engine (CSR label sets, its own counting) agrees at every k.
    sets = from_multi_hot(indicators.astype(float), N_LABELS)
    for k in (1, 2, 3):
        np.testing.assert_array_equal(counts <= 2 * k, rule_argmaxable(sets, k, np.array(ORDER)))
    assert (circle_sign_changes(indicators) != counts).any()  # the order matters for these sets
    with pytest.raises(ValueError, match="permutation"):
        circle_sign_changes(indicators, [0] * N_LABELS)


# ----------------------------------------------------------------------------------------------------------------
# model.predict / predict_label_sets
# ----------------------------------------------------------------------------------------------------------------


def test_predict_matches_logits_thresholded_by_hand_and_flags_by_hand():
    model, items = tiny_model(), texts()
    logits = reference_logits(model, items)
    predictions = model.predict(items, tokenizer=tokenizer(), batch_size=7)
    assert_matches(predictions, logits, np.zeros(N_LABELS))
    flags = [p.within_guarantee for p in predictions]
    assert flags == [hand_sign_changes(p.labels, ORDER) <= 2 * K for p in predictions]
    # The data exercise both answers, and the circle order (not label-id order) decides them.
    assert True in flags and False in flags
    assert flags != [hand_sign_changes(p.labels, None) <= 2 * K for p in predictions]
    assert len({len(p.labels) for p in predictions}) >= 3


def test_batching_gives_the_result_of_one_batch():
    model, items = tiny_model(), texts(23)
    whole = predict_label_sets(model, items, tokenizer(), batch_size=len(items))
    for batch_size in (1, 4, 22):
        split = predict_label_sets(model, items, tokenizer(), batch_size=batch_size)
        assert [(p.labels, p.within_guarantee) for p in split] == [(p.labels, p.within_guarantee) for p in whole]
        for a, b in zip(split, whole):
            np.testing.assert_allclose(a.scores, b.scores, rtol=0, atol=1e-6)


def test_probability_threshold_is_a_logit_threshold():
    model, items = tiny_model(), texts()
    logits = reference_logits(model, items)
    for threshold in (0.2, 0.8):
        predictions = model.predict(items, tokenizer=tokenizer(), threshold=threshold)
        assert_matches(predictions, logits, np.full(N_LABELS, math.log(threshold / (1 - threshold))))
        assert all(min(p.scores, default=1.0) > threshold for p in predictions)
        # A uniform threshold only shifts x_0 (G's first column is constant): the rule still decides.
        assert [p.within_guarantee for p in predictions] == [
            hand_sign_changes(p.labels, ORDER) <= 2 * K for p in predictions
        ]
    assert all(len(p.labels) == N_LABELS for p in model.predict(items, tokenizer=tokenizer(), threshold=0.0))
    assert all(p.labels == [] and p.within_guarantee for p in model.predict(items, tokenizer=tokenizer(), threshold=1))


def test_config_logit_thresholds_are_honoured_and_the_flag_is_still_the_rule():
    model, items = tiny_model(), texts()
    logits = reference_logits(model, items)
    thresholds = np.random.default_rng(9).uniform(-2.0, 2.0, N_LABELS)
    model.config.logit_thresholds = thresholds.tolist()
    predictions = model.predict(items, tokenizer=tokenizer())
    assert_matches(predictions, logits, thresholds)
    # Finite thresholds keep every set within 2k sign changes outputtable (the head is linear in x: scale a
    # witness), so the flag is still the rule, counted here by hand.
    assert [p.within_guarantee for p in predictions] == [
        hand_sign_changes(p.labels, ORDER) <= 2 * K for p in predictions
    ]
    assert predictions != model.predict(items, tokenizer=tokenizer(), threshold=0.5)
    # An explicit threshold overrides the configured ones.
    explicit = model.predict(items, tokenizer=tokenizer(), threshold=0.5)
    assert_matches(explicit, logits, np.zeros(N_LABELS))
    assert None not in [p.within_guarantee for p in explicit]
    # Equal per-label thresholds are a uniform threshold: decided.
    model.config.logit_thresholds = [0.7] * N_LABELS
    uniform = model.predict(items, tokenizer=tokenizer())
    assert_matches(uniform, logits, np.full(N_LABELS, 0.7))
    assert [p.within_guarantee for p in uniform] == [hand_sign_changes(p.labels, ORDER) <= 2 * K for p in uniform]


def test_logit_thresholds_round_trip_and_bad_ones_fail_at_construction(tmp_path):
    model = tiny_model(logit_thresholds=[0.25] * N_LABELS)
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["logit_thresholds"] == [0.25] * N_LABELS
    assert DFTForMultiLabelClassification.from_pretrained(tmp_path).config.logit_thresholds == [0.25] * N_LABELS
    with pytest.raises(ValueError, match=r"one number per label, shape \(14,\), got shape \(3,\)"):
        tiny_model(logit_thresholds=[0.0, 1.0, 2.0])
    with pytest.raises(ValueError, match="NaN at labels \\[2\\]"):
        tiny_model(logit_thresholds=[0.0, 0.0, float("nan")] + [0.0] * 11)
    model.config.logit_thresholds = [0.0] * 5  # set after construction: caught before any forward pass
    with pytest.raises(ValueError, match="one number per label"):
        model.predict(["need help"], tokenizer=tokenizer())


def test_top_k_caps_the_thresholded_set():
    model, items = tiny_model(), texts()
    logits = reference_logits(model, items)
    full = model.predict(items, tokenizer=tokenizer())
    capped = model.predict(items, tokenizer=tokenizer(), top_k=9)
    for whole, cut in zip(full, capped):
        assert cut.labels == whole.labels[:9] and cut.scores == pytest.approx(whole.scores[:9], abs=1e-9)
        assert cut.within_guarantee == (hand_sign_changes(cut.labels, ORDER) <= 2 * K)  # the flag of the cut set
    sizes = [len(p.labels) for p in full]
    assert min(sizes) < 9 < max(sizes)  # some sets are cut, some are shorter than top_k (and not padded up)
    assert [len(p.labels) for p in capped] == [min(size, 9) for size in sizes]
    # threshold 0 lets every label through: exactly the 3 best.
    best = model.predict(items, tokenizer=tokenizer(), threshold=0.0, top_k=3)
    for prediction, row in zip(best, logits):
        assert prediction.labels == [LABELS[i] for i in np.argsort(-row, kind="stable")[:3]]


def test_single_text_empty_list_train_mode_and_default_tokenizer(tmp_path):
    model = tiny_model()
    model.save_pretrained(tmp_path)
    tokenizer().save_pretrained(tmp_path)
    loaded = DFTForMultiLabelClassification.from_pretrained(tmp_path).train()  # dropout on
    one = loaded.predict("need help now")  # tokenizer from the checkpoint folder
    assert isinstance(one, LabelSetPrediction)
    assert loaded.training  # the caller's mode is restored
    names, scores = by_hand(reference_logits(model, ["need help now"])[0], np.zeros(N_LABELS))
    assert one.labels == names and one.scores == pytest.approx(scores, abs=1e-5)
    assert loaded.predict([]) == []
    assert one.to_dict() == {"labels": one.labels, "scores": one.scores, "within_guarantee": one.within_guarantee}


@pytest.mark.parametrize("head_kind", ["bottleneck", "dense"])
def test_heads_without_a_guarantee_get_no_flag(head_kind):
    model, items = tiny_model(head_kind), texts(10)
    predictions = model.predict(items, tokenizer=tokenizer(), top_k=3)
    logits = reference_logits(model, items)
    for prediction, row in zip(predictions, logits):
        assert prediction.labels == by_hand(row, np.zeros(N_LABELS))[0][:3]
        assert prediction.within_guarantee is None


def stock_model(problem_type: str | None = "multi_label_classification") -> BertForSequenceClassification:
    torch.manual_seed(2)
    config = BertConfig(
        vocab_size=len(WORDS), hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37
    )
    config.num_labels, config.id2label = N_LABELS, dict(enumerate(LABELS))
    config.label2id = {name: i for i, name in enumerate(LABELS)}
    config.problem_type = problem_type
    model = BertForSequenceClassification(config).eval()
    with torch.no_grad():
        model.classifier.weight.normal_(0.0, 2.0)
    return model


def test_stock_multilabel_model_gets_sets_without_a_flag():
    model, items = stock_model(), texts(12)
    predictions = predict_label_sets(model, items, tokenizer())
    assert_matches(predictions, reference_logits(model, items), np.zeros(N_LABELS))
    assert {p.within_guarantee for p in predictions} == {None}
    assert any(p.labels for p in predictions)


def test_models_without_sigmoid_outputs_are_refused():
    with pytest.raises(ValueError, match="problem_type='single_label_classification'.*not independent sigmoids"):
        predict_label_sets(stock_model("single_label_classification"), ["help"], tokenizer())
    with pytest.raises(ValueError, match="assume_multi_label=True"):
        predict_label_sets(stock_model(None), ["help"], tokenizer())
    assert len(predict_label_sets(stock_model(None), ["help"], tokenizer(), assume_multi_label=True)) == 1


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"threshold": 1.5}, r"threshold is a probability in \[0, 1\], got 1.5"),
        ({"threshold": -0.1}, r"threshold is a probability in \[0, 1\]"),
        ({"threshold": "0.5"}, r"threshold is a probability in \[0, 1\], got '0.5'"),
        ({"threshold": True}, r"threshold is a probability"),
        ({"threshold": float("nan")}, r"threshold is a probability"),
        ({"top_k": 0}, r"top_k must be an integer >= 1 \(or None for no cap\), got 0"),
        ({"top_k": 2.5}, r"top_k must be an integer >= 1"),
        ({"top_k": True}, r"top_k must be an integer >= 1"),
        ({"batch_size": 0}, r"batch_size must be an integer >= 1, got 0"),
        ({"max_length": 1}, r"max_length must be an integer >= 2"),
    ],
)
def test_bad_options_fail_before_any_forward_pass(kwargs, message):
    model = tiny_model()
    calls = []
    model.register_forward_hook(lambda *args: calls.append(1))
    with pytest.raises(ValueError, match=message):
        model.predict(["need help"], tokenizer=tokenizer(), **kwargs)
    assert calls == []


@pytest.mark.parametrize(
    "bad,message",
    [
        (None, r"texts must be a string or a list of strings, got NoneType"),
        (42, r"got int"),
        (b"need help", r"got bytes"),
        (["fine", None], r"texts\[1\] is a NoneType, not a string"),
        (["fine", ["nested"]], r"texts\[1\] is a list"),
    ],
)
def test_bad_texts_are_named(bad, message):
    with pytest.raises(ValueError, match=message):
        tiny_model().predict(bad, tokenizer=tokenizer())


def test_numpy_options_and_a_tokenizer_without_padding():
    model, items = tiny_model(), texts(6)
    assert model.predict(items, tokenizer=tokenizer(), threshold=np.float32(0.8), top_k=np.int64(2)) == model.predict(
        items, tokenizer=tokenizer(), threshold=0.8, top_k=2
    )
    unpadded = tokenizer()
    unpadded.pad_token = None
    with pytest.raises(ValueError, match="no padding token, so texts cannot be batched.*batch_size=1"):
        model.predict(items, tokenizer=unpadded)
    one_by_one = model.predict(items, tokenizer=unpadded, batch_size=1)
    assert [p.labels for p in one_by_one] == [p.labels for p in model.predict(items, tokenizer=tokenizer())]


def test_model_without_a_known_origin_asks_for_a_tokenizer():
    model = tiny_model()
    model.name_or_path = model.config.name_or_path = ""
    with pytest.raises(ValueError, match=r"Pass tokenizer=AutoTokenizer.from_pretrained"):
        model.predict(["need help"])


# ----------------------------------------------------------------------------------------------------------------
# Remote code: predict without the package; AutoTokenizer without the remote-code prompt
# ----------------------------------------------------------------------------------------------------------------

REMOTE_SCRIPT = textwrap.dedent(
    """
    import contextlib, io, json, sys
    sys.modules["hf_dft_head"] = None  # the package cannot be imported here
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    folder, items = sys.argv[1], json.loads(sys.argv[2])
    out = {}
    model = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True)
    out["module"] = type(model).__module__
    out["predictions"] = [p.to_dict() for p in model.predict(items, top_k=4, batch_size=3)]
    for flag in (None, False):
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):  # where input() writes a trust_remote_code prompt
            tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=flag)
        out[f"tokenizer_{flag}"] = [type(tokenizer).__name__, tokenizer(items[0])["input_ids"], printed.getvalue()]
    try:
        pipeline("multi-label-classification", model=folder, trust_remote_code=True)
        out["pipeline"] = "loaded"
    except KeyError as error:
        out["pipeline"] = str(error)
    print(json.dumps(out))
    """
)


def test_remote_code_model_predicts_without_the_package(tmp_path):
    model, items = tiny_model(), texts(7)
    model.save_pretrained(tmp_path / "ckpt")
    tokenizer().save_pretrained(tmp_path / "ckpt")
    expected = [p.to_dict() for p in model.predict(items, tokenizer=tokenizer(), top_k=4)]
    result = subprocess.run(
        [sys.executable, "-c", REMOTE_SCRIPT, str(tmp_path / "ckpt"), json.dumps(items)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["module"].startswith("transformers_modules.")
    remote = out["predictions"]
    assert [(p["labels"], p["within_guarantee"]) for p in remote] == [
        (p["labels"], p["within_guarantee"]) for p in expected
    ]
    for a, b in zip(remote, expected):
        np.testing.assert_allclose(a["scores"], b["scores"], rtol=0, atol=1e-6)
    ids = tokenizer()(items[0])["input_ids"]
    # Why AutoTokenizer asks: it reads config.json through AutoConfig first, and config.json's auto_map names our
    # configuration class (remote-code loading needs it), so without the plugin and without an answer it prompts
    # (and, refused, falls back to the standard tokenizer). trust_remote_code=False loads it without asking.
    assert (
        out["tokenizer_None"][:2] == ["BertTokenizer", ids]
        and "Do you wish to run the custom code" in (out["tokenizer_None"][2])
    )
    assert out["tokenizer_False"] == ["BertTokenizer", ids, ""]
    tokenizer_config = json.loads((tmp_path / "ckpt" / "tokenizer_config.json").read_text())
    assert tokenizer_config["tokenizer_class"] == "BertTokenizer" and "auto_map" not in tokenizer_config
    # The custom task exists only where the package registered it (see docs/predict.md).
    assert "Unknown task multi-label-classification" in out["pipeline"]


# ----------------------------------------------------------------------------------------------------------------
# hf-dft predict (run_predict)
# ----------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("predict") / "dft"
    tiny_model().save_pretrained(folder)
    tokenizer().save_pretrained(folder)
    return folder


def records_by_hand(items: list[str], top_k: int | None = None) -> list[dict]:
    model = tiny_model()
    return [{"text": t, **p.to_dict()} for t, p in zip(items, model.predict(items, tokenizer=tokenizer(), top_k=top_k))]


def assert_records(actual: list[dict], expected: list[dict]) -> None:
    assert [(r["text"], r["labels"], r["within_guarantee"]) for r in actual] == [
        (r["text"], r["labels"], r["within_guarantee"]) for r in expected
    ]
    for a, b in zip(actual, expected):
        np.testing.assert_allclose(a["scores"], b["scores"], rtol=0, atol=1e-6)


def test_run_predict_texts_to_stdout(checkpoint):
    items = texts(5)
    stream = io.StringIO()
    predictions = run_predict(str(checkpoint), items, PredictArguments(top_k=3, device="cpu"), stream=stream)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert_records(lines, records_by_hand(items, top_k=3))
    assert [p.labels for p in predictions] == [line["labels"] for line in lines]


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".txt"])
def test_run_predict_file_to_file(checkpoint, tmp_path, suffix):
    items = texts(45) + ['a "quoted", comma text', "école fermée"]
    source = tmp_path / f"in{suffix}"
    if suffix == ".jsonl":
        source.write_text("\n".join(json.dumps({"id": i, "body": t}) for i, t in enumerate(items)) + "\n\n")
    elif suffix == ".csv":
        import csv

        with open(source, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["id", "body"])
            writer.writerows(enumerate(items))
    else:
        source.write_text("\n".join(items) + "\n\n", encoding="utf-8")
    output = tmp_path / "out" / "preds.jsonl"
    stream = io.StringIO()
    options = PredictArguments(input=str(source), output=str(output), text_column="body", batch_size=4)
    run_predict(str(checkpoint), None, options, progress=False, stream=stream)
    assert stream.getvalue() == f"Wrote {len(items)} predictions to {output}\n"
    written = [json.loads(line) for line in output.read_text(encoding="utf-8").splitlines()]
    assert_records(written, records_by_hand(items))
    assert sorted(p.name for p in output.parent.iterdir()) == ["preds.jsonl"]  # no temporary file left
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(output.stat().st_mode) == 0o666 & ~umask  # an ordinary file, not a private temporary one


def test_run_predict_stock_checkpoint_writes_null_flags(tmp_path):
    stock_model().save_pretrained(tmp_path / "stock")
    tokenizer().save_pretrained(tmp_path / "stock")
    stream = io.StringIO()
    run_predict(str(tmp_path / "stock"), texts(4), PredictArguments(), stream=stream)
    assert [json.loads(line)["within_guarantee"] for line in stream.getvalue().splitlines()] == [None] * 4


def test_predict_arguments_parse_and_document_themselves():
    for option in fields(PredictArguments):
        assert option.metadata.get("help"), f"--{option.name} has no help"
    (options,) = HfArgumentParser([PredictArguments]).parse_args_into_dataclasses(
        ["--input", "x.csv", "--top-k", "3", "--threshold", "0.3", "--text_column", "body"]
    )
    assert (options.input, options.top_k, options.threshold, options.text_column) == ("x.csv", 3, 0.3, "body")


def _write(path: Path, text: str | bytes) -> str:
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return str(path)


@pytest.mark.parametrize(
    "make,texts_given,options,message",
    [
        (None, [], {}, r"No texts: give them after the checkpoint"),
        (lambda d: _write(d / "a.txt", "x\n"), ["also"], {}, r"either on the command line or with --input, not both"),
        (lambda d: str(d / "missing.jsonl"), [], {}, r"missing.jsonl: no such file. Give an existing .jsonl, .csv"),
        (lambda d: _write(d / "a.parquet", "x"), [], {}, r"unsupported file type '.parquet'"),
        (lambda d: _write(d / "a.txt", "\n  \n"), [], {}, r"a.txt: the file holds no texts"),
        (lambda d: _write(d / "a.jsonl", ""), [], {}, r"the file holds no texts"),
        (lambda d: _write(d / "a.csv", "text\n"), [], {}, r"the file holds no texts"),
        (
            lambda d: _write(d / "a.jsonl", '{"text": "ok"}\n{"body": "x", "id": 1}\n'),
            [],
            {},
            r"a.jsonl, line 2: no 'text' field \(fields: body, id\). Name the text field with --text-column",
        ),
        (lambda d: _write(d / "a.jsonl", '{"text": "ok"}\n{"text": \n'), [], {}, r"line 2: not valid JSON"),
        (lambda d: _write(d / "a.jsonl", '["text"]\n'), [], {}, r"line 1: expected a JSON object"),
        (lambda d: _write(d / "a.jsonl", '{"text": 3}\n'), [], {}, r"line 1: 'text' is a int, not a string"),
        (
            lambda d: _write(d / "a.csv", "id,body\n1,hello\n"),
            [],
            {},
            r"a.csv: no 'text' column \(columns: id, body\). Name the text column with --text-column",
        ),
        (lambda d: _write(d / "a.csv", "id,text\n1,hello\n2\n"), [], {}, r"a.csv, line 3: the row has no 'text'"),
        (lambda d: _write(d / "a.txt", b"caf\xe9\n"), [], {}, r"a.txt: not UTF-8 text"),
        (None, ["x"], {"threshold": 2.0}, r"--threshold is a probability in \[0, 1\], got 2.0"),
        (None, ["x"], {"top_k": 0}, r"top_k must be an integer >= 1"),
        (None, ["x"], {"batch_size": 0}, r"--batch-size must be >= 1"),
        (None, ["x"], {"max_length": 1}, r"--max-length must be >= 2"),
        (None, ["x"], {"device": "gpu7"}, r"--device 'gpu7' is not a torch device"),
        (None, ["x"], {"device": "cuda:99"}, r"--device cuda:99 is not available on this machine"),
    ],
)
def test_run_predict_bad_input_is_named_and_writes_nothing(checkpoint, tmp_path, make, texts_given, options, message):
    output = tmp_path / "preds.jsonl"
    output.write_text("earlier results\n")
    arguments = PredictArguments(output=str(output), **options)
    if make is not None:
        arguments.input = make(tmp_path)
    with pytest.raises(ValueError, match=message):
        run_predict(str(checkpoint), texts_given, arguments, stream=io.StringIO())
    assert output.read_text() == "earlier results\n"


def test_run_predict_bad_paths(checkpoint, tmp_path):
    with pytest.raises(ValueError, match="is not a checkpoint folder"):
        run_predict(str(tmp_path / "nowhere"), ["x"], PredictArguments(), stream=io.StringIO())
    with pytest.raises(ValueError, match="is a folder; give a file name"):
        run_predict(str(checkpoint), ["x"], PredictArguments(output=str(tmp_path)), stream=io.StringIO())
    source = tmp_path / "in.txt"
    source.write_text("hello\n")
    with pytest.raises(ValueError, match="is the input file"):
        run_predict(str(checkpoint), None, PredictArguments(input=str(source), output=str(source)))
    assert source.read_text() == "hello\n"
    (tmp_path / "blocker").write_text("")
    with pytest.raises(ValueError, match="is a file, not a folder"):
        run_predict(str(checkpoint), ["x"], PredictArguments(output=str(tmp_path / "blocker" / "p.jsonl")))
    no_tokenizer = tmp_path / "no_tokenizer"
    tiny_model().save_pretrained(no_tokenizer)
    with pytest.raises(CheckpointError, match="has no tokenizer files"):
        run_predict(str(no_tokenizer), ["x"], PredictArguments(), stream=io.StringIO())


def test_read_texts_keeps_order_and_content(tmp_path):
    source = tmp_path / "t.txt"
    source.write_bytes("\ufefffirst line\r\n\r\nsecond, with comma\n  third  \n".encode())
    assert read_texts(source) == ["first line", "second, with comma", "  third  "]


def test_hf_dft_predict_command_line(checkpoint, tmp_path, capsys):
    """The console entry: texts as arguments to stdout; --input/--output; bad input is exit 2 and one line."""
    from hf_dft_head.cli import main as cli_main

    items = texts(3)
    assert cli_main(["predict", str(checkpoint), *items, "--top-k", "2", "--quiet"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert_records(lines, records_by_hand(items, top_k=2))

    source, output = tmp_path / "in.txt", tmp_path / "out.jsonl"
    source.write_text("\n".join(items) + "\n")
    assert cli_main(["predict", str(checkpoint), "--input", str(source), "--output", str(output), "--quiet"]) == 0
    assert_records([json.loads(line) for line in output.read_text().splitlines()], records_by_hand(items))
    capsys.readouterr()

    assert cli_main(["predict", str(checkpoint), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hf-dft predict: error: No texts") and "Traceback" not in err
