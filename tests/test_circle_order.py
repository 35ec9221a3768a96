"""Labels placed on the circle in a given order: the layer, the rule, save/load, remote code and certificates."""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from test_certificate import build_checkpoint, gold_label_sets, write_dataset
from test_layers import chebyshev_radius, explicit_gale

from hf_dft_head import DFTForMultiLabelClassification, certificate
from hf_dft_head.argmax import verify_label_sets
from hf_dft_head.audit import dataset_spec
from hf_dft_head.checkpoints import read_card_inputs, sha256_file
from hf_dft_head.gale import gale_matrix
from hf_dft_head.layers import DFTHead, DFTLayer
from hf_dft_head.model_card import render_model_card


def permutation(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).permutation(n)


@pytest.mark.parametrize("path", ["fft", "matmul"])
@pytest.mark.parametrize("n,k,slack", [(10, 2, 0), (33, 4, 3), (257, 10, 0)])
def test_gather_equals_the_explicit_permuted_matrix(path, n, k, slack):
    """z_i = (G x)_{position[i]}: row i of the layer's matrix is the Gale row of label i's position."""
    torch.manual_seed(n)
    order = permutation(n, seed=k)
    layer = DFTLayer(n, k, slack, path=path, label_order=order.tolist()).double()
    if slack:
        torch.nn.init.normal_(layer.slack)
    x = torch.randn(5, 2 * k + 1 + slack, dtype=torch.float64)
    permuted = torch.from_numpy(explicit_gale(n, k)[order])  # written out entry by entry, then permuted
    s = layer.slack.detach() if slack else torch.zeros(n, 0, dtype=torch.float64)
    expected = x[:, : 2 * k + 1] @ permuted.T + x[:, 2 * k + 1 :] @ s.T
    assert (layer(x) - expected).abs().max().item() < 1e-10
    np.testing.assert_allclose(layer.effective_matrix()[:, : 2 * k + 1], permuted.numpy(), atol=1e-12)
    # float32 on both paths agrees with the float64 reference
    assert (layer.float()(x.float()).double() - expected).abs().max().item() < 1e-5


def test_gradients_flow_through_the_gather():
    order = permutation(12, seed=1)
    head = DFTHead(8, 12, 2, label_order=order).double()
    features = torch.randn(3, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda h: head(h), (features,))


def test_bad_orders_are_refused_with_the_reason():
    with pytest.raises(ValueError, match="permutation"):
        DFTLayer(5, 1, label_order=[0, 1, 1, 3, 4])
    with pytest.raises(ValueError, match=r"shape \(5,\)"):
        DFTLayer(5, 1, label_order=[0, 1, 2])
    with pytest.raises(ValueError, match="head_kind='dense' has none"):
        DFTForMultiLabelClassification.from_encoder(
            _tiny_encoder(), num_labels=6, head_kind="dense", label_order=list(range(6))
        )


@pytest.mark.parametrize("n,k", [(10, 1), (11, 2)])
def test_rule_in_circle_order_agrees_with_an_lp_over_all_sets(n, k):
    """Every one of the 2^n sets: the engine's rule with a non-identity order against an independent full LP on the
    permuted matrix, and against sign changes counted by hand in circle order."""
    order = permutation(n, seed=n + k)
    weight = explicit_gale(n, k)[order]  # the LP's matrix, written out entry by entry
    sets = [tuple(np.flatnonzero(bits)) for bits in itertools.product((0, 1), repeat=n)]
    # The engine's rule decides only for G bit for bit, as the package computes it.
    engine_weight = gale_matrix(n, k)[order]
    verdicts = verify_label_sets(
        engine_weight, None, [list(s) for s in sets], dft_k=k, label_order=order, progress=False
    )
    for labels, verdict in zip(sets, verdicts):
        on_circle = np.zeros(n, dtype=int)
        on_circle[order[list(labels)]] = 1  # position order[i] holds label i
        by_hand = int(np.sum(on_circle[1:] != on_circle[:-1])) <= 2 * k
        y = np.zeros(n)
        y[list(labels)] = 1
        by_lp = chebyshev_radius(weight, np.zeros(n), 2 * y - 1) > 1e-7
        assert by_hand == by_lp == (verdict.status == "argmaxable"), (labels, verdict.reason)


def _tiny_encoder():
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    return BertModel(BertConfig(vocab_size=30, hidden_size=32, num_hidden_layers=1, num_attention_heads=2))


REMOTE = textwrap.dedent(
    """
    import json, sys
    sys.modules["hf_dft_head"] = None
    import torch
    from transformers import AutoModel
    model = AutoModel.from_pretrained(sys.argv[1], trust_remote_code=True).eval()
    with torch.no_grad():
        print(json.dumps(model(input_ids=torch.tensor(json.loads(sys.argv[2]))).logits.tolist()))
    """
)


@pytest.mark.parametrize("path", ["fft", "matmul"])
def test_save_load_and_remote_code_keep_the_order(path, tmp_path):
    order = permutation(20, seed=3)
    model = DFTForMultiLabelClassification.from_encoder(
        _tiny_encoder(), num_labels=20, k=3, dft_path=path, label_order=order.tolist(), label_order_method="test"
    ).eval()
    ids = torch.tensor([[2, 5, 7, 9, 3], [2, 11, 12, 3, 0]])
    with torch.no_grad():
        expected = model(input_ids=ids).logits
    model.save_pretrained(tmp_path / "ckpt")
    config = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert config["label_order"] == order.tolist() and config["label_order_method"] == "test"
    loaded = DFTForMultiLabelClassification.from_pretrained(tmp_path / "ckpt").eval()
    with torch.no_grad():
        assert torch.equal(loaded(input_ids=ids).logits, expected)
    child = subprocess.run(
        [sys.executable, "-c", REMOTE, str(tmp_path / "ckpt"), json.dumps(ids.tolist())],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert child.returncode == 0, child.stderr[-2000:]
    remote = torch.tensor(json.loads(child.stdout.strip().splitlines()[-1]))
    assert torch.equal(remote, expected)


def test_a_checkpoint_without_an_order_loads_unchanged(tmp_path):
    """Checkpoints saved before label orders existed have no label_order key: identity order, same logits."""
    model = DFTForMultiLabelClassification.from_encoder(_tiny_encoder(), num_labels=12, k=2).eval()
    ids = torch.tensor([[2, 5, 7, 3]])
    with torch.no_grad():
        expected = model(input_ids=ids).logits
    model.save_pretrained(tmp_path / "old")
    config_path = tmp_path / "old" / "config.json"
    config = json.loads(config_path.read_text())
    for key in ("label_order", "label_order_method"):
        config.pop(key, None)
    config_path.write_text(json.dumps(config))
    loaded = DFTForMultiLabelClassification.from_pretrained(tmp_path / "old").eval()
    assert loaded.config.label_order is None and loaded.head.dft.label_order is None
    with torch.no_grad():
        assert torch.equal(loaded(input_ids=ids).logits, expected)
    np.testing.assert_allclose(loaded.effective_head()[0], explicit_gale(12, 2), atol=1e-12)


def test_certificate_states_the_order_and_verify_recomputes_it(tmp_path):
    folder = build_checkpoint(tmp_path / "ordered")
    config_path = folder / "config.json"
    config = json.loads(config_path.read_text())
    order = permutation(len(config["id2label"]), seed=5)
    config["label_order"] = order.tolist()
    config_path.write_text(json.dumps(config))
    data = write_dataset(tmp_path / "gold.jsonl")
    written = certificate.certify(folder, dataset_spec(str(data), "test"), progress=False)
    assert written["status"] == "certified", written["reasons_not_certified"]
    digest = written["head"]["label_order"]
    assert digest.startswith("sha256:") and digest in written["guarantee"]["statement"]
    assert written["guarantee"]["label_order"] == written["head"]["label_order"]
    # The audit's verdicts follow sign changes in circle order, counted here by hand.
    n, k = len(config["id2label"]), config["k"]

    def changes_on_circle(labels) -> int:
        on_circle = np.zeros(n, dtype=int)
        on_circle[order[list(labels)]] = 1
        return int(np.sum(on_circle[1:] != on_circle[:-1]))

    gold = written["audit"]["gold"]
    distinct = set(gold_label_sets())
    assert gold["argmaxable"] == sum(changes_on_circle(s) <= 2 * k for s in distinct)
    assert gold["unargmaxable"] == sum(changes_on_circle(s) > 2 * k for s in distinct) > 0
    assert certificate.verify_checkpoint(folder, progress=False).outcome == "verified"
    # The model card lists the labels as they sit around the circle (label i at position order[i]).
    card = str(render_model_card(**read_card_inputs(folder), repo_id="user/ordered"))
    around = [config["id2label"][str(label)] for label in np.argsort(order)]
    assert f"in circle order): {', '.join(around)}" in card

    # Another order written into the config (and re-hashed): the head and the audit no longer match.
    changed = Path(shutil.copytree(folder, tmp_path / "changed"))
    config["label_order"] = permutation(n, seed=6).tolist()
    (changed / "config.json").write_text(json.dumps(config))
    payload = json.loads((changed / certificate.CERTIFICATE_NAME).read_text())
    payload["files"]["config.json"] = sha256_file(changed / "config.json")
    (changed / certificate.CERTIFICATE_NAME).write_text(json.dumps(payload))
    result = certificate.verify_checkpoint(changed, progress=False)
    assert result.outcome == "failed" and any(m.startswith("head.label_order") for m in result.mismatches)
