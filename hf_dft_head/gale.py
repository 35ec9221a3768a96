"""The cyclic Gale matrix of the DFT output layer, in float64 numpy.

This module is deliberately free of torch and transformers so that the verifier and
the certificate code can recompute G exactly, and so that it can be copied into a
remote-code checkpoint next to the layer (sibling relative imports only).
"""

from __future__ import annotations

import numpy as np


def dft_width(k: int, slack_dims: int = 0) -> int:
    """Width of the DFT layer's input, the columns of ``[G | S]``: ``2k + 1 + slack_dims`` (``G`` alone: 2k+1)."""
    return 2 * int(k) + 1 + int(slack_dims)


def largest_dft_k(columns: int, slack_dims: int = 0) -> int:
    """The largest ``k`` with ``dft_width(k, slack_dims) <= columns`` (0 when even ``k = 1`` does not fit): the limit
    the number of labels or the encoder's width puts on ``k``."""
    return max((int(columns) - 1 - int(slack_dims)) // 2, 0)


def check_dft_sizes(num_labels: int, k: int, slack_dims: int = 0) -> None:
    """Raise a ``ValueError`` naming the limit when (n, k, s) cannot form a DFT layer.

    The layer needs ``k >= 1``, ``slack_dims >= 0`` and ``2k + 1 + slack_dims <= n``:
    with more columns than labels G would no longer have orthonormal columns and the
    layer would be no smaller than a dense head.
    """
    if not isinstance(num_labels, (int, np.integer)) or num_labels < 1:
        raise ValueError(f"num_labels must be a positive integer, got {num_labels!r}.")
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k (the guaranteed sparsity) must be an integer >= 1, got {k!r}.")
    if not isinstance(slack_dims, (int, np.integer)) or slack_dims < 0:
        raise ValueError(f"slack_dims must be an integer >= 0, got {slack_dims!r}.")
    width = dft_width(k, slack_dims)
    if width > num_labels:
        raise ValueError(
            f"2k+1+slack_dims = {width} exceeds num_labels = {num_labels}: the DFT layer needs at most "
            f"as many columns as labels. Use k <= {largest_dft_k(num_labels, slack_dims)} "
            f"with slack_dims={slack_dims}, or fewer slack dimensions."
        )


def check_label_order(label_order, num_labels: int) -> np.ndarray:
    """Validate ``label_order`` (position on the circle of every label) and return it as int64.

    Raises:
        ValueError: wrong length, or not a permutation of ``0..num_labels-1``.
    """
    order = np.asarray(label_order)
    if order.shape != (num_labels,):
        raise ValueError(f"label_order must have shape ({num_labels},) (one position per label), got {order.shape}.")
    if not np.issubdtype(order.dtype, np.integer):
        raise ValueError(f"label_order must hold integer positions, got dtype {order.dtype}.")
    order = order.astype(np.int64)
    seen = np.zeros(num_labels, dtype=np.int64)
    inside = (order >= 0) & (order < num_labels)
    np.add.at(seen, order[inside], 1)
    if not inside.all() or not np.all(seen == 1):
        missing = np.flatnonzero(seen == 0)[:5].tolist()
        raise ValueError(
            f"label_order must be a permutation of 0..{num_labels - 1}; positions never used: {missing}. "
            f"label_order[i] is the position of label i on the circle."
        )
    return order


def gale_matrix(num_labels: int, k: int) -> np.ndarray:
    """The fixed cyclic Gale matrix ``G`` of shape ``(n, 2k + 1)`` in float64.

    Row ``j`` (angle ``t_j = 2 pi j / n``) is
    ``[1/sqrt(n), sqrt(2/n) cos(t_j), sqrt(2/n) sin(t_j), ..., sqrt(2/n) cos(k t_j), sqrt(2/n) sin(k t_j)]``.
    The columns are orthonormal (``G.T @ G == I``) because ``2k + 1 <= n``.

    Args:
        num_labels: ``n``, the number of labels (rows).
        k: the guaranteed sparsity; every label set of at most ``k`` labels is argmaxable.

    Returns:
        ``np.ndarray`` of shape ``(n, 2k + 1)``, dtype float64.
    """
    check_dft_sizes(num_labels, k)
    n = int(num_labels)
    # Reduce m * j modulo n before scaling: the angle stays in [0, 2 pi) and keeps full
    # float64 accuracy even for n in the millions.
    j = np.arange(n, dtype=np.int64)
    harmonics = np.arange(1, k + 1, dtype=np.int64)
    angles = 2.0 * np.pi * ((j[:, None] * harmonics[None, :]) % n) / n  # (n, k)
    g = np.empty((n, dft_width(k)), dtype=np.float64)
    g[:, 0] = 1.0 / np.sqrt(n)
    g[:, 1::2] = np.sqrt(2.0 / n) * np.cos(angles)
    g[:, 2::2] = np.sqrt(2.0 / n) * np.sin(angles)
    return g


def circle_sign_changes(indicators: np.ndarray, label_order=None) -> np.ndarray:
    """Sign changes of each 0/1 label indicator read in circle order (positions ``0..n-1``, not cyclic).

    Label ``i`` sits at circle position ``label_order[i]`` (identity when ``None``), as in the DFT layer. A set is
    within the DFT head's guarantee when this count is at most ``2k`` (the dense counterpart of
    ``hf_dft_head.argmax.rule.count_sign_changes``, which works on sparse label sets).

    Args:
        indicators: ``(B, n)`` booleans (or 0/1), row ``b`` the label set of example ``b`` in label-id order.
        label_order: ``(n,)`` permutation of ``0..n-1``, or ``None``.

    Returns:
        int64 array of shape ``(B,)``.
    """
    indicators = np.asarray(indicators, dtype=bool)
    if indicators.ndim != 2:
        raise ValueError(f"indicators must have shape (batch, num_labels), got {indicators.shape}.")
    on_circle = indicators
    if label_order is not None:
        order = check_label_order(label_order, indicators.shape[1])
        on_circle = np.empty_like(indicators)
        on_circle[:, order] = indicators  # position label_order[i] holds label i
    return np.count_nonzero(on_circle[:, 1:] != on_circle[:, :-1], axis=1).astype(np.int64)
