"""The chunked BCE of the DFT head (``layers.dft_bce_loss``) and the model's use of it.

References: the loss written out from its definition in float64 over the explicit matrix ``[G[order] | S]`` (numpy
Gale rows, not the layer's cache) with autograd for the gradient; torch's ``binary_cross_entropy_with_logits`` on
the model's logits; and a whole training run with ``--chunked-loss no``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_encoder_config
from test_train_speed_path import run_args, small_data  # noqa: F401  (small_data is a fixture)
from transformers import AutoModel

from hf_dft_head import DFTForMultiLabelClassification
from hf_dft_head.cli import main as cli_main
from hf_dft_head.configuration import DFTConfig
from hf_dft_head.gale import gale_matrix
from hf_dft_head.layers import CHUNKED_LOSS_BLOCK_SIZE, DFTHead, dft_bce_loss

N, K, D = 37, 4, 16


def explicit_loss(head: DFTHead, features, target, pos_weight) -> torch.Tensor:
    """Mean of ``-[w y log sigmoid(z) + (1 - y) log(1 - sigmoid(z))]`` with ``z = x [G[order] | S]^T``, float64."""
    gale = gale_matrix(head.dft.num_labels, head.dft.k)
    if head.dft.label_order is not None:
        gale = gale[head.dft.label_order]
    x = features @ head.weight.T + head.bias
    z = x[:, : gale.shape[1]] @ torch.from_numpy(gale).T
    if head.dft.slack is not None:
        z = z + x[:, gale.shape[1] :] @ head.dft.slack.T
    weight = torch.ones(head.dft.num_labels, dtype=torch.float64) if pos_weight is None else pos_weight
    terms = weight * target * torch.log1p(torch.exp(-z)) + (1 - target) * torch.log1p(torch.exp(z))
    return terms.mean()


@pytest.mark.parametrize("slack_dims", [0, 3])
@pytest.mark.parametrize("permuted", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("block_size", [1, 7, N, 1000])
def test_loss_and_gradients_equal_the_explicit_formula(slack_dims, permuted, weighted, block_size):
    generator = torch.Generator().manual_seed(block_size + 10 * slack_dims + 100 * permuted + 1000 * weighted)
    order = np.random.default_rng(3).permutation(N) if permuted else None
    head = DFTHead(D, N, K, slack_dims, path="matmul", label_order=order, init_std=0.5).double()
    if slack_dims:
        with torch.no_grad():
            head.dft.slack.normal_(0.0, 0.5, generator=generator)
    features = torch.randn(5, D, dtype=torch.float64, generator=generator)
    # Repeated pairs (0, 1) and (3, 2) count once, as in a multi-hot target; row 2 has no positive.
    rows = torch.tensor([0, 0, 1, 3, 3, 3, 4, 0])
    cols = torch.tensor([1, 5, 36, 0, 2, 2, 7, 1])
    target = torch.zeros(5, N, dtype=torch.float64)
    target[rows, cols] = 1.0
    pos_weight = torch.rand(N, dtype=torch.float64, generator=generator) * 4 + 0.25 if weighted else None

    expected = explicit_loss(head, features, target, pos_weight)
    expected_grads = torch.autograd.grad(expected, list(head.parameters()))
    loss = dft_bce_loss(head.project(features), head.dft, rows, cols, pos_weight, block_size=block_size)
    grads = torch.autograd.grad(loss, list(head.parameters()))
    torch.testing.assert_close(loss, expected, rtol=1e-13, atol=1e-14)
    for got, want in zip(grads, expected_grads):
        torch.testing.assert_close(got, want, rtol=1e-11, atol=1e-14)


def test_large_logits_and_no_positives():
    """Logits of +-60 (softplus's cut-off region) and a batch without positives keep the exact loss."""
    head = DFTHead(D, N, K, path="matmul").double()
    with torch.no_grad():
        head.bias.copy_(torch.linspace(-60, 60, head.bias.numel(), dtype=torch.float64) * np.sqrt(N))
    features = torch.zeros(3, D, dtype=torch.float64)
    empty = torch.zeros(0, dtype=torch.int64)
    loss = dft_bce_loss(head.project(features), head.dft, empty, empty)
    torch.testing.assert_close(loss, explicit_loss(head, features, torch.zeros(3, N, dtype=torch.float64), None))


def test_bad_positives_are_refused():
    head = DFTHead(D, N, K)
    x = head.project(torch.zeros(2, D))
    with pytest.raises(ValueError, match=r"positives must lie in \[0, 2\) x \[0, 37\)"):
        dft_bce_loss(x, head.dft, torch.tensor([2]), torch.tensor([0]))
    with pytest.raises(ValueError, match=r"positives must lie"):
        dft_bce_loss(x, head.dft, torch.tensor([0]), torch.tensor([37]))
    with pytest.raises(ValueError, match="pair up"):
        dft_bce_loss(x, head.dft, torch.tensor([0, 1]), torch.tensor([0]))
    with pytest.raises(ValueError, match=r"shape \(B, 9\)"):
        dft_bce_loss(torch.zeros(2, 5), head.dft, torch.tensor([0]), torch.tensor([0]))


def tiny_model(num_labels: int, chunked_loss, slack_dims: int = 2) -> DFTForMultiLabelClassification:
    torch.manual_seed(0)
    config = DFTConfig(
        encoder=tiny_encoder_config("bert").to_dict(),
        num_labels=num_labels,
        k=3,
        slack_dims=slack_dims,
        classifier_dropout=0.0,
        chunked_loss=chunked_loss,
    )
    return DFTForMultiLabelClassification(config)


def test_model_loss_equals_the_plain_loss_and_skips_the_logits():
    chunked, plain = tiny_model(40, True), tiny_model(40, False)
    plain.load_state_dict(chunked.state_dict())
    with torch.no_grad():
        chunked.head.dft.slack.normal_()
        plain.head.dft.slack.copy_(chunked.head.dft.slack)
    features = torch.randn(6, chunked.config.hidden_size)
    labels = (torch.rand(6, 40) < 0.2).long()
    pos_weight = torch.rand(40) + 1
    out_chunked = chunked(encoder_features=features, labels=labels, pos_weight=pos_weight)
    out_plain = plain(encoder_features=features, labels=labels, pos_weight=pos_weight)
    assert out_chunked.logits is None and out_plain.logits.shape == (6, 40)
    torch.testing.assert_close(
        out_plain.loss,
        torch.nn.functional.binary_cross_entropy_with_logits(out_plain.logits, labels.float(), pos_weight=pos_weight),
    )
    torch.testing.assert_close(out_chunked.loss, out_plain.loss)
    out_chunked.loss.backward()
    out_plain.loss.backward()
    for (name, a), b in zip(chunked.head.named_parameters(), plain.head.parameters()):
        torch.testing.assert_close(a.grad, b.grad, msg=name)
    # Without gradients (evaluation) the logits are made and the loss is the plain one.
    with torch.no_grad():
        evaluated = chunked(encoder_features=features, labels=labels)
    torch.testing.assert_close(evaluated.logits, out_plain.logits)
    # Soft targets are not positives: the plain loss takes them.
    soft = chunked(encoder_features=features, labels=labels * 0.7)
    assert soft.logits is not None


def test_automatic_choice_by_label_count():
    assert not tiny_model(CHUNKED_LOSS_BLOCK_SIZE, None, slack_dims=0).uses_chunked_loss()
    assert tiny_model(CHUNKED_LOSS_BLOCK_SIZE + 1, None, slack_dims=0).uses_chunked_loss()
    assert tiny_model(40, True).uses_chunked_loss() and not tiny_model(40, False).uses_chunked_loss()
    with pytest.raises(ValueError, match="chunked_loss must be True, False or None"):
        DFTConfig(encoder=tiny_encoder_config("bert").to_dict(), num_labels=40, chunked_loss="yes")


def test_training_with_the_chunked_loss_matches_the_plain_loss(small_data, minilm_path, tmp_path):  # noqa: F811
    """Same loss at every logged step, same metrics, same head to float tolerance: the option changes memory only."""
    for option in ("yes", "no"):
        assert cli_main([*run_args(small_data, tmp_path / option, minilm_path), "--chunked-loss", option]) == 0

    def losses(name: str) -> list[float]:
        lines = (tmp_path / name / "log.jsonl").read_text().splitlines()
        return [record["loss"] for record in map(json.loads, lines) if "loss" in record]

    assert len(losses("yes")) == 9
    np.testing.assert_allclose(losses("yes"), losses("no"), rtol=1e-5)
    heads = [AutoModel.from_pretrained(tmp_path / option).head.state_dict() for option in ("yes", "no")]
    for name, value in heads[0].items():
        torch.testing.assert_close(value, heads[1][name], rtol=1e-4, atol=1e-5, msg=name)
    configs = [json.loads(Path(tmp_path / option / "config.json").read_text()) for option in ("yes", "no")]
    assert configs[0]["chunked_loss"] is True and configs[1]["chunked_loss"] is False
    results = [json.loads((tmp_path / option / "eval_results.json").read_text()) for option in ("yes", "no")]
    assert results[0]["test"]["f1@5"] == pytest.approx(results[1]["test"]["f1@5"], abs=1e-6)
