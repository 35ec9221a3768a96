"""The LP engine: hand-built heads, certificates and witnesses checked with plain numpy, constraint
generation against the full LP, parallel against serial, and bad input."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import linprog

from hf_dft_head.argmax import check_farkas_certificate, check_witness, verify_label_sets, verify_signs


def signs_of(labels, n):
    signs = -np.ones(n)
    signs[list(labels)] = 1.0
    return signs


def assert_certificate_holds(weight, bias, verdict):
    """Independent check of a Farkas certificate: y >= 0, sum y sigma w = 0, sum y sigma b <= 0 (to rounding)."""
    rows, y = np.asarray(verdict.certificate_rows), np.asarray(verdict.certificate)
    sigma = signs_of(verdict.labels, len(weight))[rows]
    assert np.all(y >= 0) and y.sum() > 0
    scale = np.sum(y * np.linalg.norm(weight[rows], axis=1))
    assert np.linalg.norm((y * sigma) @ weight[rows]) <= 1e-10 * scale
    b = np.zeros(len(weight)) if bias is None else bias
    assert (y * sigma) @ b[rows] <= 1e-10 * scale * max(1.0, np.abs(b).max())


def assert_witness_holds(weight, bias, verdict):
    b = np.zeros(len(weight)) if bias is None else bias
    signs = signs_of(verdict.labels, len(weight))
    assert np.all(signs * (weight @ verdict.witness + b) > 0)
    assert np.all(signs * (weight.astype(np.float32) @ verdict.witness.astype(np.float32) + b.astype(np.float32)) > 0)


def check_all(weight, bias, result):
    for verdict in result:
        if verdict.status == "unargmaxable":
            assert_certificate_holds(weight, bias, verdict)
        elif verdict.status == "argmaxable" and verdict.witness is not None:
            assert_witness_holds(weight, bias, verdict)


def test_labels_on_a_line():
    """z_i = x - (i + 1): x switches labels on in order, so only prefixes are argmaxable.

    The middle label cannot be off while both ends are on ({0, 2}), nor can a later label be on
    while an earlier one is off. Rank 2 in the homogenised space (w_i, b_i).
    """
    weight = np.ones((3, 1))
    bias = -np.array([1.0, 2.0, 3.0])
    sets = [[], [0], [1], [2], [0, 1], [0, 2], [1, 2], [0, 1, 2]]
    result = verify_label_sets(weight, bias, sets, progress=False)
    expected = {(): True, (0,): True, (0, 1): True, (0, 1, 2): True}
    assert [v.status for v in result] == [
        "argmaxable" if expected.get(tuple(s), False) else "unargmaxable" for s in sets
    ]
    check_all(weight, bias, result)
    # The certificate for {0, 2} must combine "x > 3" (label 2 on) with "x < 2" (label 1 off).
    middle = result[5]
    assert 1 in middle.certificate_rows and 2 in middle.certificate_rows


def test_rank_two_homogeneous_head_only_arcs_are_argmaxable():
    """Unit vectors at 5 angles in the plane, no bias: argmaxable sets are the arcs (and their complements)."""
    angles = np.array([0.0, 0.9, 2.1, 3.3, 4.6])
    weight = np.c_[np.cos(angles), np.sin(angles)]
    n = len(angles)
    sets = [[j for j in range(n) if (mask >> j) & 1] for mask in range(2**n)]
    result = verify_label_sets(weight, None, sets, progress=False, dtype="float64")
    # Brute force over directions on a fine grid (generic angles: every region is an open arc).
    theta = np.linspace(0, 2 * np.pi, 20000, endpoint=False)
    patterns = {tuple(np.flatnonzero(weight @ [np.cos(t), np.sin(t)] > 0)) for t in theta}
    assert {tuple(v.labels) for v in result if v.status == "argmaxable"} == patterns
    assert len(patterns) == 2 * n  # C(n, 2) = 2 * (1 + (n - 1))
    check_all(weight, None, result)


def test_chebyshev_centre_of_square_and_triangle():
    square_w = np.array([[1.0, 0], [-1, 0], [0, 1], [0, -1]])
    square = verify_label_sets(square_w, np.ones(4), [[0, 1, 2, 3]], exact_radius=True, progress=False)[0]
    assert square.status == "argmaxable" and square.radius_exact
    assert square.radius == pytest.approx(1.0, abs=1e-8)
    assert np.allclose(square.witness, 0.0, atol=1e-8)
    # Triangle x > 0, y > 0, x + y < 1: inradius 1 / (2 + sqrt 2), centre (r, r).
    tri_w = np.array([[1.0, 0], [0, 1], [-1, -1]])
    tri_b = np.array([0.0, 0.0, 1.0])
    r = 1.0 / (2.0 + np.sqrt(2.0))
    for cg in (True, False):
        tri = verify_label_sets(tri_w, tri_b, [[0, 1, 2]], exact_radius=True, constraint_generation=cg, progress=False)
        assert tri[0].radius == pytest.approx(r, abs=1e-9)
        assert np.allclose(tri[0].witness, [r, r], atol=1e-8)
    # epsilon is relative to the box: r / B = 2.9e-5 at B = 1e4.
    box = 1e4
    assert verify_label_sets(tri_w, tri_b, [[0, 1, 2]], epsilon=2e-5, box=box, progress=False)[0].epsilon_argmaxable
    assert not verify_label_sets(tri_w, tri_b, [[0, 1, 2]], epsilon=4e-5, box=box, progress=False)[0].epsilon_argmaxable


def test_radius_matches_scipy_linprog_and_cg_matches_full_lp():
    """Random dense heads with bias: statuses, epsilon flags and exact radii agree across strategies
    and with an independent scipy LP of the same Chebyshev problem."""
    rng = np.random.default_rng(0)
    n, m, box = 60, 8, 10.0
    weight = rng.standard_normal((n, m))
    bias = rng.standard_normal(n) - 3.0
    sets = [sorted(rng.choice(n, size, replace=False).tolist()) for size in rng.integers(0, 6, 120)]
    # epsilon at the median radius, so that both epsilon decisions occur.
    probe = verify_label_sets(weight, bias, sets, box=box, exact_radius=True, progress=False)
    epsilon = float(np.median([v.relative_radius for v in probe if v.status == "argmaxable"]))
    kwargs = dict(box=box, epsilon=epsilon, progress=False)
    full = verify_label_sets(weight, bias, sets, constraint_generation=False, **kwargs)
    exact = verify_label_sets(weight, bias, sets, exact_radius=True, **kwargs)
    fast = verify_label_sets(weight, bias, sets, **kwargs)
    statuses = [v.status for v in full]
    assert statuses.count("argmaxable") >= 20 and statuses.count("unargmaxable") >= 20
    assert "undecided" not in statuses
    flags = [v.epsilon_argmaxable for v in full]
    assert flags.count(True) >= 5 and sum(f is False and s == "argmaxable" for f, s in zip(flags, statuses)) >= 5
    assert [v.status for v in exact] == statuses == [v.status for v in fast]
    assert [v.epsilon_argmaxable for v in exact] == flags == [v.epsilon_argmaxable for v in fast]
    norms = np.linalg.norm(weight, axis=1)
    for f, e, q, labels in zip(full, exact, fast, sets):
        check_all(weight, bias, [f, e, q])
        if f.status != "argmaxable":
            continue
        assert e.radius == pytest.approx(f.radius, rel=1e-6, abs=1e-9)
        assert q.radius <= f.radius * (1 + 1e-9) + 1e-12  # a lower bound when not exact
        # Reference: maximise r s.t. -sigma_i w_i x + ||w_i|| r <= sigma_i b_i, |x|_inf <= B, r <= B.
        sigma = signs_of(labels, n)
        ref = linprog(
            np.r_[np.zeros(m), -1.0],
            A_ub=np.c_[-sigma[:, None] * weight, norms],
            b_ub=sigma * bias,
            bounds=[(-box, box)] * m + [(None, box)],
            method="highs",
        )
        assert -ref.fun == pytest.approx(f.radius, rel=1e-6, abs=1e-9)


def test_dense_head_more_rows_than_dims_uses_certificates():
    """n >> d, no bias: most sets unargmaxable; certificates hold; a few planted sets are argmaxable."""
    rng = np.random.default_rng(1)
    n, m = 400, 12
    weight = rng.standard_normal((n, m))
    x0 = rng.standard_normal(m)
    planted = np.flatnonzero(weight @ x0 > 0).tolist()  # realised by x0: must be argmaxable
    sets = [planted] + [sorted(rng.choice(n, s, replace=False).tolist()) for s in (0, 1, 3, 10)]
    result = verify_label_sets(weight, None, sets, progress=False)
    assert result[0].status == "argmaxable"
    assert all(v.status == "unargmaxable" for v in result[1:])
    check_all(weight, None, result)
    for verdict in result[1:]:
        check = check_farkas_certificate(
            weight, None, signs_of(verdict.labels, n), verdict.certificate, rows=verdict.certificate_rows
        )
        assert check.valid and check.residual < 1e-12


def test_region_outside_the_box():
    """z = x - 2e4 needs x > 2e4: argmaxable, but not inside |x| <= 1e4 (radius 0 there)."""
    weight = np.ones((1, 1))
    bias = np.array([-2e4])
    verdict = verify_label_sets(weight, bias, [[0]], box=1e4, progress=False)[0]
    assert verdict.status == "argmaxable" and verdict.outside_box
    assert verdict.radius == 0.0 and verdict.epsilon_argmaxable is False
    assert verdict.witness[0] > 2e4
    inside = verify_label_sets(weight, bias, [[0]], box=1e5, progress=False)[0]
    assert not inside.outside_box and inside.epsilon_argmaxable


def test_thin_region_is_undecided_in_float32_never_unargmaxable():
    """Labels on at x > 1 and off at x > 1 + 1e-8: a float64 witness exists, float32 cannot see it."""
    weight = np.ones((2, 1))
    bias = np.array([-1.0, -(1.0 + 1e-8)])
    low = verify_label_sets(weight, bias, [[0]], box=10.0, dtype="float32", progress=False)[0]
    assert low.status == "undecided" and "float32" in low.reason
    high = verify_label_sets(weight, bias, [[0]], box=10.0, dtype="float64", progress=False)[0]
    assert high.status == "argmaxable" and not high.epsilon_argmaxable
    assert 1.0 < high.witness[0] < 1.0 + 1e-8
    # Far below LP resolution (relative radius 5e-16) yet above rounding: still never "unargmaxable".
    tiny = verify_label_sets(weight, np.array([-1.0, -(1.0 + 1e-11)]), [[0]], progress=False)[0]
    assert tiny.status == "undecided"


def test_certificate_checker_rejects_bad_certificates():
    weight = np.ones((3, 1))
    bias = -np.array([1.0, 2.0, 3.0])
    signs = signs_of([0, 2], 3)
    assert check_farkas_certificate(weight, bias, signs, np.array([0.0, 0.5, 0.5]))
    assert not check_farkas_certificate(weight, bias, signs, np.array([0.0, -0.5, 0.5]))  # negative weight
    assert not check_farkas_certificate(weight, bias, signs, np.zeros(3))
    assert not check_farkas_certificate(weight, bias, signs, np.array([0.0, 0.5, 0.4]))  # residual
    assert not check_farkas_certificate(weight, bias, signs_of([0, 1], 3), np.array([0.5, 0.5, 0.0]))  # offset > 0
    assert check_witness(weight, bias, signs_of([0, 1], 3), np.array([2.5]))
    assert not check_witness(weight, bias, signs_of([0, 1], 3), np.array([3.5]))


def test_zero_rows_and_empty_set():
    weight = np.array([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]])
    bias = np.array([-1.0, 0.5, -1.0])  # label 1 is always on
    result = verify_label_sets(weight, bias, [[], [1], [0, 1], [0]], progress=False)
    assert [v.status for v in result] == ["unargmaxable", "argmaxable", "argmaxable", "unargmaxable"]
    assert result[0].certificate_rows.tolist() == [1]
    # The empty set is the all-negative pattern: argmaxable for a head whose biases are all negative.
    assert verify_label_sets(np.eye(3), -np.ones(3), [[]], progress=False)[0].status == "argmaxable"


def test_verify_signs_and_to_dict():
    weight = np.ones((3, 1))
    bias = -np.array([1.0, 2.0, 3.0])
    verdict = verify_signs(weight, bias, np.array([1, -1, 1]))
    assert verdict.status == "unargmaxable" and verdict.labels == (0, 2)
    as_dict = verdict.to_dict()
    assert as_dict["status"] == "unargmaxable" and isinstance(as_dict["certificate"], list)


def test_parallel_equals_serial():
    rng = np.random.default_rng(5)
    n, m = 80, 6
    weight = rng.standard_normal((n, m))
    bias = rng.standard_normal(n) - 3.0
    sets = [sorted(rng.choice(n, size, replace=False).tolist()) for size in rng.integers(0, 6, 40)]
    serial = verify_label_sets(weight, bias, sets, progress=False)
    parallel = verify_label_sets(weight, bias, sets, n_jobs=2, progress=False)
    assert len({v.status for v in serial}) > 1
    for a, b in zip(serial, parallel):
        assert a.status == b.status and a.radius == b.radius and a.reason == b.reason
        for key in ("witness", "certificate", "certificate_rows"):
            x, y = getattr(a, key), getattr(b, key)
            assert (x is None and y is None) or np.array_equal(x, y)


@pytest.mark.parametrize(
    ("sets", "kwargs", "message"),
    [
        ([[0, 5]], {}, "label set 0 contains label id 5"),
        ([[1], [0, -1]], {}, "label set 1 contains label id -1"),
        ([[0], [2, 1, 2]], {}, "label set 1 contains label id 2 more than once"),
        ([[0, 1, 0]], {"multi_hot": True}, r"shape \(num_sets, 4\)"),
        ([[0, 2, 0, 1]], {"multi_hot": True}, "multi-hot row 0 has value 2"),
        ([[0.5]], {}, "non-integer"),
    ],
)
def test_bad_label_sets(sets, kwargs, message):
    with pytest.raises(ValueError, match=message):
        verify_label_sets(np.eye(4), None, sets, progress=False, **kwargs)


def test_bad_heads():
    weight = np.eye(4)
    bad = weight.copy()
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match="weight row 2 contains NaN or inf"):
        verify_label_sets(bad, None, [[0]], progress=False)
    bad[2, 1] = np.inf
    with pytest.raises(ValueError, match="weight row 2"):
        verify_label_sets(bad, None, [[0]], progress=False)
    with pytest.raises(ValueError, match=r"bias must have shape \(4,\)"):
        verify_label_sets(weight, np.zeros(3), [[0]], progress=False)
    with pytest.raises(ValueError, match="bias entry 1"):
        verify_label_sets(weight, np.array([0.0, np.nan, 0, 0]), [[0]], progress=False)
    with pytest.raises(ValueError, match="2-D"):
        verify_label_sets(np.ones(4), None, [[0]], progress=False)
    with pytest.raises(ValueError, match="dtype"):
        verify_label_sets(weight, None, [[0]], dtype="int8", progress=False)


def test_multi_hot_and_tensor_inputs():
    torch = pytest.importorskip("torch")
    weight = torch.eye(3, dtype=torch.float32)
    rows = np.array([[1, 0, 1], [0, 0, 0]])
    result = verify_label_sets(
        weight, torch.full((3,), -0.5), rows, multi_hot=True, dtype=torch.float32, progress=False
    )
    assert [v.labels for v in result] == [(0, 2), ()]
    assert all(v.status == "argmaxable" for v in result)


def test_dual_simplex_bound_settles_a_thin_region_early():
    """With a witness known, the LP may stop as soon as the dual simplex proves rho* < epsilon."""
    from hf_dft_head.argmax.lp import Problem, maximise_radius

    rng = np.random.default_rng(6)
    n, m, box = 300, 20, 10.0
    weight = rng.standard_normal((n, m))
    bias = -1.0 - rng.random(n)
    signs = -np.ones(n)
    norms = np.linalg.norm(weight, axis=1)
    problem = Problem(weight / norms[:, None], bias / norms / box, signs, np.ones(n, dtype=bool))
    everything = np.arange(n)
    optimum = maximise_radius(problem, everything, exact=True, epsilon=0.0)
    assert optimum.kind == "optimal" and optimum.rho_upper > 0
    above = maximise_radius(problem, everything, exact=False, epsilon=2 * optimum.rho_upper, known_lower=1e-9)
    assert above.kind == "bound" and above.rho_upper < 2 * optimum.rho_upper
    below = maximise_radius(problem, everything, exact=False, epsilon=0.5 * optimum.rho_upper, known_lower=1e-9)
    assert below.kind in ("optimal", "early") and below.rho_lower >= 0.5 * optimum.rho_upper
