"""Verdicts exact down to the floating-point floor.

Every "argmaxable" witness and every "unargmaxable" certificate is re-checked here in exact rational
arithmetic (``fractions``, over the float64 values of the head), independently of the engine's own proofs,
and small heads are compared against an exact decision by Fourier-Motzkin elimination in fractions.
"""

from __future__ import annotations

import itertools
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from hf_dft_head.argmax import check_farkas_certificate, check_witness, verify_label_sets
from hf_dft_head.argmax.exact import _exact_certificate, prove_box_empty, prove_farkas, witness_signs
from hf_dft_head.gale import gale_matrix

DATA = Path(__file__).parent / "data"


# ---------------------------------------------------------------- exact references (fractions only)


def signs_of(labels, n: int) -> np.ndarray:
    signs = -np.ones(n)
    signs[list(labels)] = 1.0
    return signs


def exact_signed_logits(weight, bias, signs, x) -> list[Fraction]:
    """``sigma_i (w_i . x + b_i)`` in exact rationals over the float64 values (``x`` may hold fractions)."""
    xs = [v if isinstance(v, Fraction) else Fraction(float(v)) for v in x]
    out = []
    for row, b, s in zip(np.asarray(weight, dtype=np.float64), np.asarray(bias, dtype=np.float64), signs):
        total = Fraction(float(b)) + sum((Fraction(float(w)) * v for w, v in zip(row, xs)), Fraction(0))
        out.append(total if s > 0 else -total)
    return out


def null_space(matrix: list[list[Fraction]], columns: int) -> list[list[Fraction]]:
    """Basis of ``{y : matrix y = 0}`` by Gauss-Jordan elimination in fractions."""
    rows = [row[:] for row in matrix]
    pivots, r = [], 0
    for c in range(columns):
        pivot = next((i for i in range(r, len(rows)) if rows[i][c] != 0), None)
        if pivot is None:
            continue
        rows[r], rows[pivot] = rows[pivot], rows[r]
        rows[r] = [v / rows[r][c] for v in rows[r]]
        for i in range(len(rows)):
            if i != r and rows[i][c] != 0:
                factor = rows[i][c]
                rows[i] = [a - factor * b for a, b in zip(rows[i], rows[r])]
        pivots.append(c)
        r += 1
    basis = []
    for free in (c for c in range(columns) if c not in pivots):
        vector = [Fraction(0)] * columns
        vector[free] = Fraction(1)
        for i, c in enumerate(pivots):
            vector[c] = -rows[i][free]
        basis.append(vector)
    return basis


def assert_exact_certificate(weight, bias, verdict) -> None:
    """The certificate's rows carry an exact Farkas certificate: the null space of ``A_R^T`` (signed rows) is one
    vector ``y``, which can be taken ``>= 0`` with ``sum_i y_i sigma_i b_i <= 0`` (exact fractions)."""
    rows = np.asarray(verdict.certificate_rows)
    signs = signs_of(verdict.labels, len(weight))
    bias = np.zeros(len(weight)) if bias is None else np.asarray(bias, dtype=np.float64)
    signed = [[Fraction(float(signs[i] * weight[i, j])) for i in rows] for j in range(weight.shape[1])]
    basis = null_space(signed, len(rows))
    assert len(basis) == 1, f"certificate rows {rows.tolist()} do not form a circuit ({len(basis)} null vectors)"
    y = basis[0]
    if sum(y) < 0:
        y = [-v for v in y]
    assert all(v >= 0 for v in y) and any(v > 0 for v in y), "exact null vector has mixed signs"
    gap = sum((Fraction(float(signs[i] * bias[i])) * v for i, v in zip(rows, y)), Fraction(0))
    assert gap <= 0, f"exact gap {float(gap)} > 0"
    # The stored float certificate approximates that exact one (same direction; ill-conditioned supports cost digits).
    stored = np.asarray(verdict.certificate, dtype=np.float64)
    exact = np.array([float(v) for v in y])
    assert np.abs(stored / stored.sum() - exact / exact.sum()).max() <= 1e-6


def assert_exact_witness(weight, bias, verdict, dtype: str) -> None:
    """The witness's signs hold exactly, and with the logits computed in ``dtype`` by numpy."""
    bias = np.zeros(len(weight)) if bias is None else np.asarray(bias, dtype=np.float64)
    signs = signs_of(verdict.labels, len(weight))
    assert min(exact_signed_logits(weight, bias, signs, verdict.witness)) > 0
    if dtype == "float32":
        low = weight.astype(np.float32) @ verdict.witness.astype(np.float32) + bias.astype(np.float32)
    else:
        low = weight @ verdict.witness + bias
    assert np.all(signs * low > 0)


def fourier_motzkin_feasible(weight, bias, signs) -> bool:
    """Exact decision: is ``{x : sigma_i (w_i . x + b_i) > 0 for all i}`` non-empty? Fourier-Motzkin in fractions.

    Strict inequalities survive elimination exactly: for fixed other coordinates the last one must lie strictly
    between every lower and every upper bound, which is possible iff each lower bound is below each upper bound.
    """
    system = [
        ([Fraction(float(s * w)) for w in row], Fraction(float(s * b)))
        for row, b, s in zip(np.asarray(weight, dtype=np.float64), np.asarray(bias, dtype=np.float64), signs)
    ]
    for var in range(np.asarray(weight).shape[1] - 1, -1, -1):
        upper = [(a, c) for a, c in system if a[var] < 0]
        lower = [(a, c) for a, c in system if a[var] > 0]
        rest = [(a, c) for a, c in system if a[var] == 0]
        for (a, c), (d, e) in itertools.product(lower, upper):
            p, q = -d[var], a[var]  # both > 0: p * (a . x + c) + q * (d . x + e) > 0 has no x_var
            rest.append(([p * u + q * v for u, v in zip(a, d)], p * c + q * e))
        system = rest
    return all(c > 0 for _, c in system)


# ---------------------------------------------------------------- the cases


def test_opposite_rows_with_a_positive_exact_gap_are_never_unargmaxable():
    """x > 1e8 and x < 1e8 + 3e-8: the float gap rounds, the exact gap is positive, x = 1e8 + 2^-26 realises it."""
    weight = np.array([[1.0], [-1.0]])
    bias = np.array([-1e8, 1e8 + 3e-8])
    signs = np.array([1.0, 1.0])
    x = np.array([1e8 + 2.0**-26])
    assert min(exact_signed_logits(weight, bias, signs, x)) > 0  # the reference: the set is argmaxable
    # The old float check accepted y = (1/2, 1/2) (residual 0, offset 1.5e-8 "at rounding level"); the exact one
    # does not: sum_i y_i sigma_i b_i = (3e-8 as float64) / 2 > 0.
    assert check_farkas_certificate(weight, bias, signs, np.array([0.5, 0.5]), exact=False)
    assert not check_farkas_certificate(weight, bias, signs, np.array([0.5, 0.5]))
    for dtype in ("float64", "float32"):
        verdict = verify_label_sets(weight, bias, [[0, 1]], dtype=dtype, progress=False)[0]
        assert verdict.status != "unargmaxable", verdict.reason
        if verdict.status == "argmaxable":
            assert_exact_witness(weight, bias, verdict, dtype)
    # The engine's exact check agrees with fractions on that x. Its margins (1.5e-8 at |x| = 1e8) are below the
    # rounding error of some float64 evaluation orders, and float32 cannot see the region at all: not "in dtype".
    for dtype in ("float64", "float32"):
        check = check_witness(weight, bias, signs, x, dtype=dtype)
        assert not check and check.exact and not check.in_dtype


def trigonometric_witness(labels, n: int, k: int) -> np.ndarray:
    """``x`` with ``G(n, k) x = p`` at the labels, ``p(t) = prod_j sin((t - beta_j) / 2)`` over the 2k boundaries
    ``beta`` half-way between each isolated label and its neighbours: a degree-k trigonometric polynomial that is
    positive on the labels and negative elsewhere. ``G`` has orthonormal columns, so ``x = G^T p``."""
    positions = np.arange(n)
    angles = 2 * np.pi * positions / n
    boundaries = np.sort(np.concatenate([2 * np.pi * (np.asarray(labels) + s) / n for s in (-0.5, 0.5)]))
    assert len(boundaries) == 2 * k
    values = np.prod(np.sin((angles[:, None] - boundaries[None, :]) / 2), axis=1)
    values *= np.sign(values[labels[0]])
    return gale_matrix(n, k).T @ values


def test_isolated_labels_under_gale_2000_7_exact_witness_and_no_false_certificate():
    """Seven isolated labels, 14 = 2k sign changes: the rule says argmaxable; a trigonometric witness proves it for
    the float64 G too (exact margin ~4e-14), so the LP without dft_k must not call it unargmaxable."""
    n, k = 2000, 7
    labels = [1014, 1061, 1110, 1213, 1253, 1558, 1840]
    weight = gale_matrix(n, k)
    signs = signs_of(labels, n)
    x = trigonometric_witness(labels, n, k)
    margins = exact_signed_logits(weight, np.zeros(n), signs, x)
    assert 0 < min(margins) < 1e-12  # a real region, far below float32 resolution
    # The engine's exact check agrees (float64 logits alone would be too coarse to trust here).
    assert check_witness(weight, None, signs, x, dtype="float64").exact
    for dtype in ("float32", "float64"):
        verdict = verify_label_sets(weight, None, [labels], dtype=dtype, progress=False)[0]
        assert verdict.status != "unargmaxable", verdict.reason
        if verdict.witness is not None:
            assert min(exact_signed_logits(weight, np.zeros(n), signs, verdict.witness)) > 0
    rule = verify_label_sets(weight, None, [labels], dft_k=k, progress=False)
    assert rule.dft_rule and rule[0].status == "argmaxable" and rule[0].method == "rule"


def test_rule_is_for_exact_g_only_float32_rounded_g_is_refused_and_really_differs():
    """float32-rounded G (within 2e-9 of G) realises fewer sets: the LP proves this one unargmaxable with an exact
    certificate, while the rule (a theorem about G) would say argmaxable. So dft_k refuses such a matrix, and with
    dft_atol it is decided by the LP alone."""
    n, k = 2000, 7
    labels = [1014, 1061, 1110, 1213, 1253, 1558, 1840]
    rounded = gale_matrix(n, k).astype(np.float32).astype(np.float64)
    with pytest.raises(ValueError, match="differs from the Gale matrix"):
        verify_label_sets(rounded, None, [labels], dft_k=k, progress=False)
    result = verify_label_sets(rounded, None, [labels], dft_k=k, dft_atol=1e-6, progress=False)
    assert result.dft_k == k and not result.dft_rule and 0 < result.dft_max_abs_error < 1e-8
    verdict = result[0]
    assert verdict.method == "lp" and verdict.status == "unargmaxable"
    assert_exact_certificate(rounded, None, verdict)


def test_dft_head_effective_matrix_is_g_bit_for_bit_so_the_rule_applies():
    torch = pytest.importorskip("torch")
    from hf_dft_head.layers import DFTHead

    torch.manual_seed(0)
    head = DFTHead(in_features=8, num_labels=40, k=3, slack_dims=2)
    weight, bias = head.effective_head()
    result = verify_label_sets(weight, bias, [[0, 1], [0, 5, 10, 15, 20]], dft_k=3, progress=False)
    assert result.dft_rule and result.dft_max_abs_error == 0.0
    assert [v.method for v in result] == ["rule", "lp"]  # 2 vs 10 sign changes; slack: "no" goes to the LP
    # A bias that differs across labels by one ulp is not absorbed exactly by G's constant column.
    bumped = np.zeros(40)
    bumped[3] = 5e-324
    with pytest.raises(ValueError, match="same for every label"):
        verify_label_sets(weight, bumped, [[0]], dft_k=3, progress=False)


def test_witness_inside_the_box_is_not_outside_the_box():
    """x > 0 and x < 1e-8: the region is inside |x| <= 1e4 (relative radius 5e-13, below the LP's resolution)."""
    weight, bias = np.array([[1.0], [-1.0]]), np.array([0.0, 1e-8])
    for dtype in ("float32", "float64"):
        verdict = verify_label_sets(weight, bias, [[0, 1]], rule_only=False, dtype=dtype, progress=False)[0]
        assert verdict.status == "argmaxable" and not verdict.outside_box, verdict.reason
        assert np.abs(verdict.witness).max() <= 1e4
        assert_exact_witness(weight, bias, verdict, dtype)
        assert 0 < verdict.relative_radius <= 5e-13 and verdict.epsilon_argmaxable is False


def test_outside_box_only_when_proven():
    """x > 1e4 - 1e-9 reaches into the box |x| <= 1e4 (x = 1e4 realises it): never "outside the box";
    x > 2e4 does not, and the boxed LP's duals prove it."""
    weight = np.ones((1, 1))
    near = np.array([-(1e4 - 1e-9)])
    assert exact_signed_logits(weight, near, [1.0], [1e4])[0] > 0  # reference: inside the box
    verdict = verify_label_sets(weight, near, [[0]], box=1e4, progress=False)[0]
    assert verdict.status == "argmaxable" and not verdict.outside_box
    far = verify_label_sets(weight, np.array([-2e4]), [[0]], box=1e4, progress=False)[0]
    assert far.status == "argmaxable" and far.outside_box and far.witness[0] > 2e4
    # The box proof is a bound: it holds for x = -2e4 + ... only inside the box, never beyond it.
    assert prove_box_empty(weight, np.array([-2e4]), np.ones(1), np.array([0]), np.ones(1), 1e4)
    assert not prove_box_empty(weight, np.array([-2e4]), np.ones(1), np.array([0]), np.ones(1), 2e4)
    assert not prove_box_empty(weight, near, np.ones(1), np.array([0]), np.ones(1), 1e4)


def test_dense_head_exact_radius_finishes_like_the_full_lp():
    """Regression: a trained 595 x 384 dense head and one of its gold sets. The radius is at the LP's cap (a
    degenerate optimum); a hot-started dual simplex stalled for minutes after rows were added. Now a stalled hot
    start is restarted from scratch, so constraint generation costs at most a few full LPs."""
    data = np.load(DATA / "dense_head_radius_hang.npz")
    weight, bias, labels = data["weight"], data["bias"], data["label_set"].tolist()
    start = time.perf_counter()
    full = verify_label_sets(weight, bias, [labels], constraint_generation=False, progress=False)[0]
    full_seconds = time.perf_counter() - start
    start = time.perf_counter()
    # time_limit (per HiGHS solve) turns a relapse into a quick "undecided" instead of a hang.
    fast = verify_label_sets(weight, bias, [labels], exact_radius=True, time_limit=25.0, progress=False)[0]
    fast_seconds = time.perf_counter() - start
    assert fast_seconds < 30.0 and fast_seconds < 20 * full_seconds + 2.0, (fast_seconds, full_seconds)
    assert full.status == fast.status == "argmaxable" and fast.radius_exact, fast.reason
    assert fast.relative_radius == pytest.approx(full.relative_radius, rel=1e-6)
    assert_exact_witness(weight, bias, fast, "float32")


# ---------------------------------------------------------------- the exact checks themselves


def test_witness_signs_agree_with_fractions_on_cancelling_sums():
    """Logits that are exactly zero or one ulp away where float64 rounding says otherwise."""
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((40, 5))
    x = rng.standard_normal(5)
    # Biases that make the float64 logit exactly 0, and its neighbours one ulp either side.
    float_sum = weight @ x
    bias = np.concatenate([-float_sum[:20], np.nextafter(-float_sum[20:30], np.inf), np.nextafter(-float_sum[30:], -1)])
    signs = np.where(rng.random(40) < 0.5, 1.0, -1.0)
    reference = exact_signed_logits(weight, bias, signs, x)
    for subset in (np.arange(40), *[np.array([i]) for i in range(40)]):
        got = witness_signs(weight[subset], bias[subset], signs[subset], x)
        assert got.holds == all(reference[i] > 0 for i in subset)
        if not got.holds:
            assert reference[got.bad_row if len(subset) == 1 else subset[got.bad_row]] <= 0
    # The filter decides clear rows alone; the exact sums are only for the rows near zero.
    clear = witness_signs(weight, -float_sum + 10 * signs, signs, x)
    assert clear.holds and clear.exact_rows == 0
    lower = clear.lower
    assert np.all(lower > 0) and all(
        float(r) >= lo for r, lo in zip(exact_signed_logits(weight, -float_sum + 10 * signs, signs, x), lower)
    )


def test_prove_farkas_exact_gap_zero_tiny_and_ulp_rows():
    """Certificates decided by the exact gap: zero (valid: the inequalities are strict), one ulp positive (invalid),
    and rows one ulp from opposite (no exact dependency: invalid)."""
    one = np.array([[1.0], [-1.0]])
    both = np.ones(2)
    for bias, valid in (([0.0, 0.0], True), ([0.5, -0.5], True), ([0.5, np.nextafter(-0.5, 0)], False)):
        assert prove_farkas(one, np.array(bias), both, np.arange(2), np.ones(2)).valid == valid
    ulp = np.array([[1.0, 1.0], [-1.0, np.nextafter(-1.0, 0)]])
    assert not prove_farkas(ulp, np.zeros(2), both, np.arange(2), np.ones(2)).valid
    # ... and the region is real (though it holds no float64 point): x = (-1, 1 + 2^-55) in exact rationals.
    assert min(exact_signed_logits(ulp, np.zeros(2), both, [Fraction(-1), 1 + Fraction(1, 2**55)])) > 0
    # Three rows in the plane, square system: verified float64 solve, and the exact solve agrees.
    weight = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]])
    proof = prove_farkas(weight, np.array([0.0, 0.0, 0.0]), np.ones(3), np.arange(3), np.ones(3))
    assert proof.valid and proof.method == "verified float64 solve"
    exact_weights, _ = _exact_certificate(weight, np.zeros(3))
    assert np.allclose(proof.weights, 1 / 3) and np.array_equal(exact_weights, np.full(3, 1 / 3))
    # Gap exactly zero with a bias in no single column's direction: only the exact rational solve can tell.
    thirds = prove_farkas(weight, np.array([0.25, 0.25, -0.5]), np.ones(3), np.arange(3), np.ones(3))
    assert thirds.valid and thirds.method == "exact rational solve"
    assert not prove_farkas(weight, np.array([0.25, 0.25, np.nextafter(-0.5, 0)]), np.ones(3), np.arange(3), np.ones(3))


def test_rule_certificates_hold_in_exact_arithmetic():
    """Every set the rule rejects on G(12, 2) (identity and permuted circle order) carries a certificate that
    holds exactly for the float64 G."""
    n, k = 12, 2
    order = np.random.default_rng(2).permutation(n)
    sets = [[j for j in range(n) if (mask >> j) & 1] for mask in range(2**n)]
    picked = [sets[i] for i in np.random.default_rng(3).choice(len(sets), 300, replace=False)]
    for label_order in (None, order):
        weight = gale_matrix(n, k) if label_order is None else gale_matrix(n, k)[order]
        result = verify_label_sets(weight, None, picked, dft_k=k, label_order=label_order, progress=False)
        rejected = [v for v in result if v.status == "unargmaxable"]
        assert len(rejected) > 100 and all(v.method == "rule" for v in rejected)
        for verdict in rejected[:60]:
            assert_exact_certificate(weight, None, verdict)
    # A constant bias is absorbed by G's constant column: the exact gap of every rule certificate is 0.
    bias = np.full(n, -0.3)
    result = verify_label_sets(gale_matrix(n, k), bias, picked[:80], dft_k=k, progress=False)
    rejected = [v for v in result if v.status == "unargmaxable"]
    assert len(rejected) > 20 and all(v.method == "rule" and "exactly" in v.reason for v in rejected)
    for verdict in rejected[:20]:
        assert_exact_certificate(gale_matrix(n, k), bias, verdict)


# ---------------------------------------------------------------- property tests on degenerate small heads


def degenerate_head(rng: np.random.Generator, n: int, m: int) -> tuple[np.ndarray, np.ndarray]:
    """A random head whose rows come in awkward pairs: exactly opposite, one ulp apart, near-parallel, duplicated
    or zero, with biases that are huge, tiny, exactly cancelling or one ulp from cancelling."""
    weight = rng.standard_normal((n, m))
    bias = rng.standard_normal(n) * rng.choice([1e-8, 1.0, 1e8], size=n)
    for i in range(1, n, 2):
        j = int(rng.integers(0, i))
        kind = rng.integers(0, 6)
        if kind == 0:  # exactly opposite, gap exactly 0 or one ulp either way
            weight[i] = -weight[j]
            bias[i] = rng.choice([-bias[j], np.nextafter(-bias[j], np.inf), np.nextafter(-bias[j], -np.inf)])
        elif kind == 1:  # one ulp apart
            weight[i] = np.nextafter(weight[j], np.inf)
            bias[i] = bias[j]
        elif kind == 2:  # near-parallel
            weight[i] = weight[j] * (1 + 1e-9 * rng.standard_normal(m))
            bias[i] = bias[j] * (1 + 1e-12)
        elif kind == 3:  # duplicate
            weight[i], bias[i] = weight[j], bias[j]
        elif kind == 4:  # zero row
            weight[i] = 0.0
        else:  # huge bias against a tiny row
            weight[i] *= 1e-6
            bias[i] = 1e6 * rng.standard_normal()
    return weight, bias


@pytest.mark.parametrize(("seed", "degenerate"), [(0, True), (1, True), (2, True), (3, True), (4, False), (5, False)])
def test_property_small_heads_against_fourier_motzkin(seed, degenerate):
    """All 2^n sets of small heads: every witness and certificate holds in exact arithmetic, and every decided
    verdict agrees with an exact Fourier-Motzkin decision. Degenerate heads may leave sets undecided (regions or
    certificates below the float resolution; an attached witness must still hold exactly); generic ones may not."""
    rng = np.random.default_rng(100 + seed)
    n, m = 6, int(rng.integers(1, 4))
    if degenerate:
        weight, bias = degenerate_head(rng, n, m)
    else:
        weight, bias = rng.standard_normal((n, m)), rng.standard_normal(n)
    sets = [[j for j in range(n) if (mask >> j) & 1] for mask in range(2**n)]
    dtype = ("float64", "float32")[seed % 2]
    result = verify_label_sets(weight, bias, sets, dtype=dtype, progress=False)
    decided = 0
    for labels, verdict in zip(sets, result):
        feasible = fourier_motzkin_feasible(weight, bias, signs_of(labels, n))
        if verdict.status == "argmaxable":
            assert feasible, (labels, verdict.reason)
            assert_exact_witness(weight, bias, verdict, dtype)
            decided += 1
        elif verdict.status == "unargmaxable":
            assert not feasible, (labels, verdict.reason)
            assert_exact_certificate(weight, bias, verdict)
            decided += 1
        elif verdict.witness is not None:
            assert feasible and verdict.witness_exact and not verdict.witness_in_dtype
            assert min(exact_signed_logits(weight, bias, signs_of(labels, n), verdict.witness)) > 0
    assert decided == len(sets) if not degenerate else decided >= len(sets) // 2


def test_dtype_check_holds_for_every_summation_order():
    """A witness counts in float32 only if every float32 evaluation order gives the right sign: rows whose sign
    flips between orders (heavy cancellation) are never accepted, and accepted rows hold in 20 random orders."""
    from hf_dft_head.argmax.lp import dtype_robust_signs

    rng = np.random.default_rng(7)
    m = 12
    rows = 120
    weight = rng.standard_normal((rows, m)) * rng.choice([1.0, 1e4], size=(rows, m))
    x = rng.standard_normal(m)
    exact = weight.astype(np.float32).astype(np.float64) @ x.astype(np.float32).astype(np.float64)
    bias = -exact + rng.standard_normal(rows) * np.abs(exact).max() * 10.0 ** rng.uniform(-10, -3, rows)
    signs = np.ones(rows)
    robust = dtype_robust_signs(weight, bias, signs, x, "float32")
    w32, x32, b32 = weight.astype(np.float32), x.astype(np.float32), bias.astype(np.float32)
    flips = 0
    for i in range(rows):
        results = []
        for _ in range(20):
            order = rng.permutation(m + 1)
            terms = [w32[i, j] * x32[j] if j < m else b32[i] for j in order]
            total = np.float32(0.0)
            for term in terms:
                total = np.float32(total + term)
            results.append(total)
        if min(results) <= 0 < max(results):
            flips += 1
        if robust[i]:
            assert min(results) > 0, i
    assert flips > 0 and 0 < robust.sum() < rows  # the case exercises both outcomes
