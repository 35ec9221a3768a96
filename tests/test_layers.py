"""The DFT layer against its explicit matrix, and the guarantee against an independent LP."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy.optimize import linprog

from hf_dft_head.gale import check_dft_sizes, dft_width, gale_matrix, largest_dft_k
from hf_dft_head.layers import (
    BottleneckHead,
    DenseHead,
    DFTHead,
    DFTLayer,
    choose_dft_path,
    dft_synthesis,
    head_parameter_count,
    prior_logit,
)


def explicit_gale(n: int, k: int) -> np.ndarray:
    """G written out entry by entry from its definition (independent of gale_matrix's vectorisation)."""
    g = np.zeros((n, 2 * k + 1))
    for j in range(n):
        t = 2 * math.pi * j / n
        g[j, 0] = 1 / math.sqrt(n)
        for m in range(1, k + 1):
            g[j, 2 * m - 1] = math.sqrt(2 / n) * math.cos(m * t)
            g[j, 2 * m] = math.sqrt(2 / n) * math.sin(m * t)
    return g


@pytest.mark.parametrize("n,k", [(3, 1), (10, 2), (11, 5), (64, 7), (1000, 10), (1001, 3)])
def test_gale_matrix_matches_definition_and_is_orthonormal(n, k):
    g = gale_matrix(n, k)
    assert g.shape == (n, 2 * k + 1) and g.dtype == np.float64
    np.testing.assert_allclose(g, explicit_gale(n, k), atol=1e-13)
    np.testing.assert_allclose(g.T @ g, np.eye(2 * k + 1), atol=1e-12)


@pytest.mark.parametrize("n,k,slack", [(10, 2, 0), (11, 3, 2), (64, 7, 5), (257, 10, 0), (1000, 12, 9), (9, 4, 0)])
def test_fft_path_equals_explicit_matrix_float64(n, k, slack):
    torch.manual_seed(0)
    layer = DFTLayer(n, k, slack, path="fft").double()
    if slack:
        torch.nn.init.normal_(layer.slack)
    x = torch.randn(6, 2 * k + 1 + slack, dtype=torch.float64)
    g = torch.from_numpy(explicit_gale(n, k))
    s = layer.slack.detach() if slack else torch.zeros(n, 0, dtype=torch.float64)
    expected = x[:, : 2 * k + 1] @ g.T + x[:, 2 * k + 1 :] @ s.T
    assert (layer(x) - expected).abs().max().item() < 1e-10
    layer.path = "matmul"
    assert (layer(x) - expected).abs().max().item() < 1e-10


@pytest.mark.parametrize("n,k", [(10, 2), (12, 5), (999, 10), (1024, 31)])
def test_fft_path_float32_and_batch_shapes(n, k):
    g = torch.from_numpy(gale_matrix(n, k))
    x = torch.randn(3, 5, 2 * k + 1)  # extra leading dimension
    z = dft_synthesis(x, n)
    assert z.shape == (3, 5, n) and z.dtype == torch.float32
    ref = x.double() @ g.T
    assert (z.double() - ref).abs().max().item() < 1e-5 * max(1.0, ref.abs().max().item())
    # half precision is upcast for the FFT and returned in the input dtype
    zb = dft_synthesis(x.bfloat16(), n)
    assert zb.dtype == torch.bfloat16


@pytest.mark.parametrize("path", ["fft", "matmul"])
def test_gradients_match_explicit_matrix(path):
    n, k, s = 13, 3, 2
    layer = DFTLayer(n, k, s, path=path).double()
    torch.nn.init.normal_(layer.slack)
    x = torch.randn(4, 2 * k + 1 + s, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(layer, (x,))
    # and the analytic gradient equals that of the explicit product
    weights = torch.randn(4, n, dtype=torch.float64)
    (layer(x) * weights).sum().backward()
    g = torch.from_numpy(explicit_gale(n, k))
    expected = torch.cat([weights @ g, weights @ layer.slack.detach()], dim=1)
    torch.testing.assert_close(x.grad, expected, atol=1e-10, rtol=0)


def test_auto_path_and_forced_paths():
    assert DFTLayer(100_000, 10, path="auto").resolved_path == choose_dft_path(100_000, 10)
    assert DFTLayer(100, 2, path="fft").resolved_path == "fft"
    assert DFTLayer(100, 2, path="matmul").resolved_path == "matmul"
    with pytest.raises(ValueError, match="path must be one of"):
        DFTLayer(100, 2, path="fast")


def test_gale_cache_follows_dtype():
    layer = DFTLayer(20, 3, path="matmul")
    x64 = torch.randn(2, 7, dtype=torch.float64)
    assert layer(x64).dtype == torch.float64
    assert layer(x64.float()).dtype == torch.float32
    assert {key[1] for key in layer._gale_cache} == {torch.float64, torch.float32}


@pytest.mark.parametrize("n,k,s", [(598, 10, 0), (598, 10, 25), (35, 5, 3)])
def test_prior_logit_initialisation(n, k, s):
    torch.manual_seed(1)
    head = DFTHead(64, n, k, s)
    features = torch.randn(256, 64)
    z = head(features).detach()
    # An example's mean logit over labels is logit(k/n) + (P_0 . h) / sqrt(n): the harmonics sum to
    # zero over the circle and the slack starts at zero.
    p, c = head.projection()
    expected = math.log(k / (n - k)) + (features.double().numpy() @ p[0]) / math.sqrt(n)
    np.testing.assert_allclose(z.mean(dim=1).numpy(), expected, atol=1e-5)
    # and over many examples the mean initial logit is the prior logit(k/n)
    assert z.mean().item() == pytest.approx(math.log(k / (n - k)), abs=0.02)
    assert prior_logit(n, k) == pytest.approx(math.log(k / (n - k)))


def test_bad_sizes_raise_clear_errors():
    with pytest.raises(ValueError, match="k .* must be an integer >= 1"):
        DFTLayer(10, 0)
    with pytest.raises(ValueError, match="exceeds num_labels = 10"):
        DFTLayer(10, 4, slack_dims=2)
    with pytest.raises(ValueError, match="slack_dims must be an integer >= 0"):
        DFTLayer(10, 1, slack_dims=-1)
    with pytest.raises(ValueError, match=r"width 2k\+1\+slack_dims = 7, got 6"):
        DFTLayer(10, 3)(torch.zeros(2, 6))
    with pytest.raises(ValueError, match="bottleneck_dim"):
        BottleneckHead(8, 10, 0)


def test_effective_heads_reproduce_logits():
    torch.manual_seed(0)
    h = torch.randn(5, 32, dtype=torch.float64)
    dft = DFTHead(32, 40, 3, slack_dims=4).double()
    torch.nn.init.normal_(dft.dft.slack)
    for head in (dft, BottleneckHead(32, 40, 6).double(), DenseHead(32, 40).double()):
        w, b = head.effective_head()
        if hasattr(head, "projection"):
            p, c = head.projection()
            x = h.numpy() @ p.T + c
        else:
            x = h.numpy()
        np.testing.assert_allclose(x @ w.T + b, head(h).detach().numpy(), atol=1e-10)


def test_parameter_counts_match_modules():
    d, n = 48, 300
    assert head_parameter_count("dense", d, n) == sum(p.numel() for p in DenseHead(d, n).parameters())
    assert head_parameter_count("bottleneck", d, n, bottleneck_dim=8) == sum(
        p.numel() for p in BottleneckHead(d, n, 8).parameters()
    )
    assert head_parameter_count("dft", d, n, k=5, slack_dims=3) == sum(
        p.numel() for p in DFTHead(d, n, 5, 3).parameters()
    )


def chebyshev_radius(weight: np.ndarray, bias: np.ndarray, signs: np.ndarray, box: float = 10.0) -> float:
    """max r s.t. sign_i (w_i x + b_i) >= ||w_i|| r, |x|_inf <= box, r <= 1 (docs/theory.md, section 4), full LP."""
    n, m = weight.shape
    norms = np.linalg.norm(weight, axis=1)
    # variables [x (m), r]; constraint: -s_i w_i x + ||w_i|| r <= s_i b_i
    a_ub = np.hstack([-(signs[:, None] * weight), norms[:, None]])
    b_ub = signs * bias
    res = linprog(
        np.r_[np.zeros(m), -1.0],
        A_ub=a_ub,
        b_ub=b_ub,
        bounds=[(-box, box)] * m + [(None, 1.0)],
        method="highs",
        options={"primal_feasibility_tolerance": 1e-10, "dual_feasibility_tolerance": 1e-10},
    )
    assert res.status == 0, res.message
    return -res.fun


def sign_change_count(indicator: np.ndarray) -> int:
    return int(np.sum(indicator[1:] != indicator[:-1]))


@pytest.mark.parametrize("n,k", [(10, 1), (11, 2), (10, 3)])
def test_sign_change_rule_agrees_with_lp_on_all_label_sets(n, k):
    g = gale_matrix(n, k)
    bias = np.zeros(n)
    for bits in itertools.product((0, 1), repeat=n):
        y = np.array(bits)
        radius = chebyshev_radius(g, bias, 2.0 * y - 1.0)
        rule = sign_change_count(y) <= 2 * k
        # radii of argmaxable sets here are >= 1e-3; solver noise is ~1e-9
        assert (radius > 1e-7) == rule, (bits, radius)


@pytest.mark.parametrize("n,k,s", [(10, 1, 0), (12, 2, 0), (12, 1, 3), (14, 3, 0)])
def test_every_small_set_is_argmaxable_in_the_models_own_head(n, k, s):
    """Take the effective matrix of the layer the model uses (random projection, trained-like slack)."""
    torch.manual_seed(n + k + s)
    head = DFTHead(2 * k + 1 + s + 3, n, k, s)
    if s:
        torch.nn.init.normal_(head.dft.slack)
    weight, bias = head.effective_head()
    np.testing.assert_allclose(weight[:, : 2 * k + 1], explicit_gale(n, k), atol=1e-12)
    for size in range(0, k + 1):
        for labels in itertools.combinations(range(n), size):
            y = np.zeros(n)
            y[list(labels)] = 1
            assert chebyshev_radius(weight, bias, 2 * y - 1) > 1e-7, labels
    # and the projection is onto the head space, so the guarantee transfers to encoder features
    p, _ = head.projection()
    assert np.linalg.matrix_rank(p) == 2 * k + 1 + s


def test_largest_dft_k_is_the_limit_the_size_checks_name():
    for columns, slack in itertools.product(range(0, 40), range(0, 6)):
        largest = largest_dft_k(columns, slack)
        assert largest >= 0 and dft_width(largest + 1, slack) > columns
        assert largest == 0 or dft_width(largest, slack) <= columns
    # The error for too many columns names it, and that k does fit.
    with pytest.raises(ValueError, match=r"Use k <= 8 with slack_dims=3"):
        check_dft_sizes(20, 9, 3)
    check_dft_sizes(20, 8, 3)
