"""Multi-label output layers as plain torch modules: the DFT head and its two baselines.

Every head maps encoder features ``h`` of shape ``(..., d)`` to label logits ``z`` of
shape ``(..., n)`` and exposes ``effective_head()``: the weight ``(n, m)`` and bias
``(n,)`` of its last affine map, in the head's *own* input space of width ``m``.
That is the space in which argmaxability is decided exactly (see docs/theory.md, section 4):

- ``DenseHead``       z = W h + b                      m = d
- ``BottleneckHead``  z = W2 (W1 h + b1) + b2          m = r
- ``DFTHead``         x = P h + c,  z = G x[:D] + S x[D:]   m = D + s,  D = 2k + 1

No transformers imports here: this module is tested and benchmarked on its own, and is
copied into remote-code checkpoints next to ``modeling.py`` (sibling imports only).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from .gale import check_dft_sizes, check_label_order, dft_width, gale_matrix

DFT_PATHS = ("auto", "fft", "matmul")
#: Labels per block of :func:`dft_bce_loss`: a block's logits, sigmoid and softplus are ``3 B 8192`` floats (12 MB at
#: B = 128). ``benchmarks/chunked_loss.py`` (README) measured the chunked loss faster than the plain one from two
#: blocks on (n = 16k: 0.72x the time, 0.13x the peak RSS; n = 1M: 0.6x the time, 1% of the memory) and slower on
#: one (n = 600: 5x the time of a 1.6 ms step, all fixed costs), so models use it above one block (``chunked_loss``).
CHUNKED_LOSS_BLOCK_SIZE = 8192


def prior_logit(num_labels: int, k: int) -> float:
    """``logit(k / n)``: the log-odds of a label when k of n labels are on, the DFT head's initial logit."""
    p = min(max(k / num_labels, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


def choose_dft_path(num_labels: int, k: int) -> str:
    """The faster of ``"fft"`` and ``"matmul"`` for ``G @ x`` at this size, on CPU, forward plus backward.

    The matmul costs ``O(n (2k+1))`` per example and the inverse real FFT ``O(n log n)`` with a
    much larger constant. ``benchmarks/head_speed.py`` measured (README) that the matmul wins for
    every ``2k + 1 <= 51`` at n = 1k..1M and breaks even around ``2k + 1 ~ 100`` (n = 10k..100k); past
    128 columns the FFT is taken. The FFT is also chosen when the cached G would exceed 256 MB (float32), so
    that the head's small memory is not given back to a cache.
    """
    width = dft_width(k)
    cache_bytes = 4 * num_labels * width
    return "fft" if width > 128 or cache_bytes > 256 * 2**20 else "matmul"


def dft_synthesis(x: torch.Tensor, num_labels: int) -> torch.Tensor:
    """``G @ x`` for the cyclic Gale matrix via an inverse real FFT.

    Args:
        x: ``(..., 2k + 1)`` coefficients ``[x_0, a_1, b_1, ..., a_k, b_k]``.
        num_labels: ``n``; requires ``2k + 1 <= n``.

    Returns:
        ``(..., n)`` with ``z_j = x_0 / sqrt(n) + sqrt(2/n) sum_m (a_m cos(m t_j) + b_m sin(m t_j))``.

    With ``norm="ortho"`` irfft gives ``z_j = (1/sqrt n) [X_0 + 2 Re sum_m X_m e^{i m t_j}]``,
    so ``X_0 = x_0`` and ``X_m = (a_m - i b_m) / sqrt 2`` (the conjugate gives the ``+sin`` sign).
    """
    in_dtype = x.dtype
    if in_dtype not in (torch.float32, torch.float64):
        # CPU FFTs support only float32/float64; half precision is upcast and cast back.
        x = x.float()
    cos_part = x[..., 1::2] / math.sqrt(2.0)  # (..., k)
    sin_part = x[..., 2::2] / math.sqrt(2.0)  # (..., k)
    real = torch.cat([x[..., :1], cos_part], dim=-1)  # (..., k + 1)
    imag = torch.cat([torch.zeros_like(x[..., :1]), -sin_part], dim=-1)  # (..., k + 1)
    # Zero-pad to the n // 2 + 1 bins irfft reads (it would pad the same zeros itself) while the parts are still
    # real: the ONNX exporter has no padding of complex tensors, so this keeps the FFT path exportable.
    pad = (0, num_labels // 2 + 1 - real.shape[-1])
    spectrum = torch.complex(nn.functional.pad(real, pad), nn.functional.pad(imag, pad))  # (..., n // 2 + 1)
    z = torch.fft.irfft(spectrum, n=num_labels, dim=-1, norm="ortho")
    return z.to(in_dtype)


class DFTLayer(nn.Module):
    """The fixed DFT output layer with optional trainable slack columns: ``z = (G x[:D])[position] + S x[D:]``.

    ``G`` (``n x (2k+1)``) is never a parameter: it is applied by an inverse real FFT, or by
    a matmul with a lazily cached copy (computed on first use on the input's device and dtype,
    so it is never garbage after meta-device construction in ``from_pretrained``).

    Label ``i`` sits at circle position ``label_order[i]`` (angle ``2 pi label_order[i] / n``): its logit is
    entry ``label_order[i]`` of ``G x``, one gather on either path (the matmul path caches the gathered rows
    ``G[label_order]``). The guarantee counts sign changes in that circle order. ``None`` is the identity.

    Args:
        num_labels: ``n``.
        k: guaranteed sparsity: every label set of at most k labels is argmaxable.
        slack_dims: ``s`` trainable slack columns ``S`` of shape ``(n, s)``; zero-initialised so
            the initial logits are exactly those of the pure layer.
        path: ``"auto"`` (pick by size, see ``choose_dft_path``), ``"fft"`` or ``"matmul"``.
        label_order: ``(n,)`` circle position of each label (a permutation of ``0..n-1``), or ``None``.

    Shapes: input ``(..., 2k + 1 + s)`` -> output ``(..., n)``.
    """

    def __init__(self, num_labels: int, k: int, slack_dims: int = 0, path: str = "auto", label_order=None):
        super().__init__()
        check_dft_sizes(num_labels, k, slack_dims)
        if path not in DFT_PATHS:
            raise ValueError(f"path must be one of {DFT_PATHS}, got {path!r}.")
        self.num_labels = int(num_labels)
        self.k = int(k)
        self.slack_dims = int(slack_dims)
        self.path = path
        # A plain array, not a buffer: the config is its one source, and meta-device loading cannot garble it.
        self.label_order = None if label_order is None else check_label_order(label_order, self.num_labels)
        self.slack = nn.Parameter(torch.zeros(num_labels, slack_dims)) if slack_dims > 0 else None
        self._gale_cache: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}
        self._order_cache: dict[torch.device, torch.Tensor] = {}
        self._rows_cache: np.ndarray | None = None

    @property
    def in_features(self) -> int:
        """Width of the layer's input: ``2k + 1 + slack_dims``."""
        return dft_width(self.k, self.slack_dims)

    @property
    def resolved_path(self) -> str:
        """The path actually used: ``path`` unless it is ``"auto"``."""
        return choose_dft_path(self.num_labels, self.k) if self.path == "auto" else self.path

    def gale(self, device: torch.device | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The cached ``G[label_order]`` (rows in label order) of shape ``(n, 2k + 1)`` on ``device`` in ``dtype``."""
        key = (torch.device(device) if device is not None else torch.device("cpu"), dtype)
        if key not in self._gale_cache:
            # Computed in float64 then cast, so every dtype gets the correctly rounded matrix.
            self._gale_cache[key] = torch.from_numpy(self.gale_rows().copy()).to(*key)  # gale_rows is read-only
        return self._gale_cache[key]

    def gale_rows(self) -> np.ndarray:
        """``G[label_order]`` in float64 numpy, ``(n, 2k + 1)``: row ``i`` is the Gale row of label ``i``'s position.

        Computed once per layer and read-only (certify reads it five times; at n = 1M each computation takes ~1 s).
        """
        if self._rows_cache is None:
            gale = gale_matrix(self.num_labels, self.k)
            rows = gale if self.label_order is None else gale[self.label_order]
            rows.setflags(write=False)
            self._rows_cache = rows
        return self._rows_cache

    def _positions(self, device: torch.device) -> torch.Tensor:
        if device not in self._order_cache:
            self._order_cache[device] = torch.from_numpy(self.label_order).to(device)
        return self._order_cache[device]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., 2k + 1 + s)`` -> logits ``(..., n)``."""
        if x.shape[-1] != self.in_features:
            raise ValueError(
                f"DFTLayer expects inputs of width 2k+1+slack_dims = {self.in_features}, got {x.shape[-1]}."
            )
        fixed = x[..., : dft_width(self.k)]
        if self.resolved_path == "fft":
            z = dft_synthesis(fixed, self.num_labels)  # (..., n) in circle order
            if self.label_order is not None:
                z = z.index_select(-1, self._positions(z.device))
        else:
            z = fixed @ self.gale(x.device, x.dtype).T
        if self.slack is not None:
            z = z + x[..., dft_width(self.k) :] @ self.slack.to(x.dtype).T
        return z

    def effective_matrix(self) -> np.ndarray:
        """``[G[label_order] | S]`` of shape ``(n, 2k + 1 + s)`` in float64: the layer as an explicit matrix."""
        g = self.gale_rows()
        if self.slack is None:
            return g
        return np.concatenate([g, self.slack.detach().double().cpu().numpy()], axis=1)

    def extra_repr(self) -> str:
        order = "identity" if self.label_order is None else "permuted"
        return (
            f"num_labels={self.num_labels}, k={self.k}, slack_dims={self.slack_dims}, path={self.path!r}, "
            f"label_order={order}"
        )


def _softplus(z: torch.Tensor) -> torch.Tensor:
    """``log(1 + exp(z))`` elementwise, to the dtype's rounding: what BCE-with-logits sums.

    torch's softplus returns ``z`` itself above ``threshold``; the error there, ``log1p(exp(-z)) < exp(-z)``, is
    below half an ulp of ``z`` from 20 on in float32 and from 40 on in float64 (half precision is never summed
    here: the loss runs in the head's float32 or float64). One kernel, 3x faster than the clamp/abs/exp/log1p form.
    """
    return nn.functional.softplus(z, threshold=40.0 if z.dtype == torch.float64 else 20.0)


class _ChunkedDFTBCE(torch.autograd.Function):
    """Mean BCE-with-logits of ``z = x[:, :D] G^T + x[:, D:] S^T`` over ``(B, n)``, one block of labels at a time.

    ``loss = (sum_{b,j} softplus(z_bj) + sum_{(b,j) positive} [w_j softplus(-z_bj) - softplus(z_bj)]) / (B n)``: the
    first sum runs over blocks of ``block_size`` labels, each block's logits ``(B, block)`` made from its Gale rows
    and dropped once its softplus and sigmoid are taken; the second reads only the positives' logits. The gradient
    is accumulated in the same pass (``dL/dz = sigmoid(z)`` plus ``-w sigmoid(-z) - sigmoid(z)`` at positives, over
    ``B n``), so backward only scales it: the synthesis is never repeated and no ``(B, n)`` tensor exists.
    """

    @staticmethod
    def forward(ctx, x, slack, gale, rows, cols, pos_weight, block_size):
        batch, (num_labels, width) = x.shape[0], gale.shape
        fixed, free = x[:, :width], x[:, width:]
        want_grad = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        grad_x = torch.zeros_like(x) if want_grad else None
        grad_slack = torch.zeros_like(slack) if want_grad and slack is not None else None
        total = torch.zeros((), dtype=torch.float64, device=x.device)
        for start in range(0, num_labels, block_size):
            block = slice(start, min(start + block_size, num_labels))
            z = fixed @ gale[block].T  # (B, block)
            if slack is not None:
                z.addmm_(free, slack[block].T)
            total += _softplus(z).sum(dtype=torch.float64)
            if want_grad:
                probability = torch.sigmoid_(z)  # in place: the block's logits are not needed any more
                grad_x[:, :width].addmm_(probability, gale[block])
                if slack is not None:
                    grad_x[:, width:].addmm_(probability, slack[block])
                    grad_slack[block] = probability.T @ free
        # The positives' correction: their logits once more, from their own rows of G and S (P of them).
        positive = fixed[rows].mul(gale[cols]).sum(dim=1)  # (P,)
        if slack is not None:
            positive = positive + free[rows].mul(slack[cols]).sum(dim=1)
        weight = pos_weight[cols] if pos_weight is not None else torch.ones_like(positive)
        total += (weight * _softplus(-positive) - _softplus(positive)).sum(dtype=torch.float64)
        scale = 1.0 / (batch * num_labels)
        if want_grad:
            step = -weight * torch.sigmoid(-positive) - torch.sigmoid(positive)  # (P,) dL/dz at positives, x B n
            grad_x[:, :width].index_add_(0, rows, step[:, None] * gale[cols])
            if slack is not None:
                grad_x[:, width:].index_add_(0, rows, step[:, None] * slack[cols])
                grad_slack.index_add_(0, cols, step[:, None] * free[rows])
                grad_slack.mul_(scale)
            grad_x.mul_(scale)
        ctx.save_for_backward(grad_x, grad_slack)
        return (total * scale).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_output):
        grad_x, grad_slack = ctx.saved_tensors
        return (
            grad_x * grad_output if ctx.needs_input_grad[0] else None,
            grad_slack * grad_output if ctx.needs_input_grad[1] else None,
            None,
            None,
            None,
            None,
            None,
        )


def dft_bce_loss(
    coefficients: torch.Tensor,
    layer: DFTLayer,
    rows: torch.Tensor,
    cols: torch.Tensor,
    pos_weight: torch.Tensor | None = None,
    block_size: int = CHUNKED_LOSS_BLOCK_SIZE,
) -> torch.Tensor:
    """Mean BCE-with-logits of ``layer(coefficients)`` against the positives ``(rows, cols)``, without the logits.

    Equal (to float rounding) to ``binary_cross_entropy_with_logits(layer(coefficients), target, pos_weight=...)``
    with ``target[rows, cols] = 1`` and zeros elsewhere, gradients included, but its memory is ``O(B block_size)``
    instead of several ``(B, n)`` tensors: the logits are made one block of labels at a time (see
    ``_ChunkedDFTBCE``). Reads the layer's cached Gale rows (``DFTLayer.gale``, in label order) and its slack.

    Args:
        coefficients: ``(B, 2k + 1 + s)``, the head's ``x = P h + c``.
        layer: the ``DFTLayer`` whose logits are meant.
        rows, cols: ``(P,)`` int64, positive ``(batch row, label id)`` pairs; repeated pairs count once.
        pos_weight: ``(n,)`` weight of each label's positive term, or ``None`` (all 1).
        block_size: labels per block (memory ``~ 3 B block_size`` floats at a time).

    Returns:
        The scalar loss, in ``coefficients.dtype``.
    """
    if coefficients.dim() != 2 or coefficients.shape[1] != layer.in_features:
        raise ValueError(f"coefficients must have shape (B, {layer.in_features}), got {tuple(coefficients.shape)}.")
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}.")
    batch, n = coefficients.shape[0], layer.num_labels
    rows, cols = rows.to(coefficients.device, torch.int64).reshape(-1), cols.to(coefficients.device, torch.int64)
    cols = cols.reshape(-1)
    if rows.shape != cols.shape:
        raise ValueError(f"rows and cols must pair up, got {rows.numel()} rows and {cols.numel()} cols.")
    outside = rows.numel() and (int(rows.min()) < 0 or int(rows.max()) >= batch)
    if outside or (cols.numel() and (int(cols.min()) < 0 or int(cols.max()) >= n)):
        raise ValueError(f"positives must lie in [0, {batch}) x [0, {n}) (batch rows x label ids).")
    # A multi-hot target holds each positive once; so must the correction.
    unique = torch.unique(rows * n + cols)
    rows, cols = unique // n, unique % n
    if pos_weight is not None:
        if pos_weight.shape != (n,):
            raise ValueError(f"pos_weight must have shape ({n},), got {tuple(pos_weight.shape)}.")
        pos_weight = pos_weight.to(coefficients.device, coefficients.dtype)
    slack = layer.slack.to(coefficients.dtype) if layer.slack is not None else None
    gale = layer.gale(coefficients.device, coefficients.dtype)
    return _ChunkedDFTBCE.apply(coefficients, slack, gale, rows, cols, pos_weight, int(block_size))


class DFTHead(nn.Module):
    """Encoder features to logits through the DFT layer: ``x = P h + c``, ``z = (G x[:D])[label_order] + S x[D:]``.

    Initialisation (Grivas et al.): ``c_0 = logit(k/n) sqrt(n)`` and ``S = 0``. The columns
    ``1..2k`` of G sum to zero over the circle, so an example's mean logit over labels is
    ``logit(k/n) + (P_0 . h) / sqrt(n)``: the prior plus a small random term. ``P`` is fully
    random (not a zero row 0) so that it has full row rank from the first step, which is what
    transfers the guarantee from the head's input space to the encoder's features.

    Shapes: ``(..., d)`` -> ``(..., n)``.
    """

    def __init__(
        self,
        in_features: int,
        num_labels: int,
        k: int,
        slack_dims: int = 0,
        path: str = "auto",
        init_std: float = 0.02,
        label_order=None,
    ):
        super().__init__()
        self.dft = DFTLayer(num_labels, k, slack_dims, path, label_order)
        # P and c are direct parameters (not an nn.Linear child) so that transformers' weight
        # initialisation, which visits parameter-owning modules, reaches this module's prior init.
        self.weight = nn.Parameter(torch.empty(self.dft.in_features, in_features))  # P: (D + s, d)
        self.bias = nn.Parameter(torch.empty(self.dft.in_features))  # c: (D + s,)
        self.init_std = init_std
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Random ``P`` (normal, ``init_std``), prior-logit ``c``, zero slack columns."""
        with torch.no_grad():
            self.weight.normal_(0.0, self.init_std)
            self.bias.zero_()
            self.bias[0] = prior_logit(self.dft.num_labels, self.dft.k) * math.sqrt(self.dft.num_labels)
            if self.dft.slack is not None:
                self.dft.slack.zero_()

    def project(self, features: torch.Tensor) -> torch.Tensor:
        """``x = P h + c``: ``(..., d)`` -> ``(..., 2k + 1 + s)``."""
        return nn.functional.linear(features, self.weight, self.bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``(..., d)`` -> ``(..., n)``."""
        return self.dft(self.project(features))

    def effective_head(self) -> tuple[np.ndarray, np.ndarray]:
        """``(W, b)`` of the last affine map in the head's own input space: ``([G | S], 0)``.

        Shapes ``(n, D + s)`` and ``(n,)``, float64.
        """
        weight = self.dft.effective_matrix()
        return weight, np.zeros(weight.shape[0])

    def projection(self) -> tuple[np.ndarray, np.ndarray]:
        """``(P, c)`` in float64, shapes ``(D + s, d)`` and ``(D + s,)``."""
        return self.weight.detach().double().cpu().numpy(), self.bias.detach().double().cpu().numpy()


class DenseHead(nn.Module):
    """The usual sigmoid classifier ``z = W h + b``. Shapes: ``(..., d)`` -> ``(..., n)``.

    The linear map is ``self.linear``: no module inside a head may be named ``classifier`` (or ``score``), because
    PEFT matches ``modules_to_save`` by name suffix and would wrap it a second time inside the head.
    """

    def __init__(self, in_features: int, num_labels: int, init_std: float = 0.02):
        super().__init__()
        self.linear = nn.Linear(in_features, num_labels)
        self.init_std = init_std
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Normal weights with ``init_std`` and zero bias, as transformers initialises classifiers."""
        with torch.no_grad():
            self.linear.weight.normal_(0.0, self.init_std)
            self.linear.bias.zero_()

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``(..., d)`` -> ``(..., n)``."""
        return self.linear(features)

    def effective_head(self) -> tuple[np.ndarray, np.ndarray]:
        """``(W, b)`` in float64, shapes ``(n, d)`` and ``(n,)``."""
        return (
            self.linear.weight.detach().double().cpu().numpy(),
            self.linear.bias.detach().double().cpu().numpy(),
        )


class BottleneckHead(nn.Module):
    """The low-rank "BSL" baseline ``z = W2 (W1 h + b1) + b2`` (no nonlinearity, rank <= r).

    Shapes: ``(..., d)`` -> ``(..., r)`` -> ``(..., n)``.
    """

    def __init__(self, in_features: int, num_labels: int, bottleneck_dim: int, init_std: float = 0.02):
        super().__init__()
        if bottleneck_dim < 1:
            raise ValueError(f"bottleneck_dim must be >= 1, got {bottleneck_dim}.")
        self.down = nn.Linear(in_features, bottleneck_dim)
        self.up = nn.Linear(bottleneck_dim, num_labels)
        self.init_std = init_std
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Normal weights with ``init_std`` and zero biases."""
        with torch.no_grad():
            for linear in (self.down, self.up):
                linear.weight.normal_(0.0, self.init_std)
                linear.bias.zero_()

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``(..., d)`` -> ``(..., n)``."""
        return self.up(self.down(features))

    def effective_head(self) -> tuple[np.ndarray, np.ndarray]:
        """``(W2, b2)`` in float64, shapes ``(n, r)`` and ``(n,)``: decided in the r-dim middle space."""
        return self.up.weight.detach().double().cpu().numpy(), self.up.bias.detach().double().cpu().numpy()

    def projection(self) -> tuple[np.ndarray, np.ndarray]:
        """``(W1, b1)`` in float64, shapes ``(r, d)`` and ``(r,)``: encoder features to the middle space."""
        return self.down.weight.detach().double().cpu().numpy(), self.down.bias.detach().double().cpu().numpy()


def head_parameter_count(kind: str, in_features: int, num_labels: int, **sizes: int) -> int:
    """Trainable head parameters: dense ``d n + n``; bottleneck ``d r + r + r n + n``; DFT ``d (D+s) + (D+s) + s n``."""
    d, n = in_features, num_labels
    if kind == "dense":
        return d * n + n
    if kind == "bottleneck":
        r = sizes["bottleneck_dim"]
        return d * r + r + r * n + n
    if kind == "dft":
        width = 2 * sizes["k"] + 1 + sizes.get("slack_dims", 0)
        return d * width + width + sizes.get("slack_dims", 0) * n
    raise ValueError(f"Unknown head kind {kind!r}; expected 'dft', 'bottleneck' or 'dense'.")
