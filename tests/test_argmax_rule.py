"""The DFT sign-change rule, its certificates and the exact counting helpers.

References are independent: a per-set loop over the 0/1 indicator, the LP on the explicit
Gale matrix, brute-force enumeration, and closed forms computed by hand.
"""

from __future__ import annotations

import itertools
from math import comb

import numpy as np
import pytest

from hf_dft_head.argmax import (
    count_dft_argmaxable,
    count_label_sets_up_to,
    count_sign_changes,
    count_sign_patterns,
    dft_rule_certificate,
    from_id_lists,
    rule_argmaxable,
    verify_label_sets,
)
from hf_dft_head.gale import gale_matrix


def all_sets(n: int) -> list[list[int]]:
    return [[j for j in range(n) if (mask >> j) & 1] for mask in range(2**n)]


def changes_by_loop(labels, n: int, order=None) -> int:
    """Reference: sign changes of the indicator laid out in circle order, one set at a time."""
    indicator = np.zeros(n, dtype=int)
    for label in labels:
        indicator[label if order is None else order[label]] = 1
    return int(np.sum(indicator[1:] != indicator[:-1]))


def test_count_sign_changes_matches_indicator_loop():
    rng = np.random.default_rng(0)
    n = 37
    sets = [sorted(rng.choice(n, size, replace=False).tolist()) for size in rng.integers(0, n + 1, 300)]
    sets += [[], list(range(n)), [0], [n - 1], [0, n - 1], [0, 1, 2], [n - 3, n - 2, n - 1]]
    batch = from_id_lists(sets, n)
    got = count_sign_changes(batch.indptr, batch.indices, n)
    assert got.tolist() == [changes_by_loop(s, n) for s in sets]
    # Hand-computed: {3} and {0, 7} have two changes on a line of 8, {0, 1, 2} one, the full set none.
    hand = from_id_lists([[3], [0, 7], [0, 1, 2], list(range(8))], 8)
    assert count_sign_changes(hand.indptr, hand.indices, 8).tolist() == [2, 2, 1, 0]


@pytest.mark.parametrize(("n", "k"), [(10, 1), (11, 2), (12, 3)])
def test_rule_equals_lp_on_every_set(n, k):
    """The theorem, checked: rule verdicts equal LP verdicts on G(n, k) for all 2^n sets."""
    sets = all_sets(n)
    rule = rule_argmaxable(from_id_lists(sets, n), k)
    lp = verify_label_sets(gale_matrix(n, k), None, sets, progress=False, dtype="float64")
    lp_status = np.array([v.status for v in lp])
    assert set(lp_status) <= {"argmaxable", "unargmaxable"}
    assert np.array_equal(rule, lp_status == "argmaxable")
    assert int(rule.sum()) == count_dft_argmaxable(n, k)
    # Every set of at most k labels and of at least n - k labels is argmaxable.
    sizes = np.array([len(s) for s in sets])
    assert rule[(sizes <= k) | (sizes >= n - k)].all()


def test_rule_with_permuted_label_order_equals_lp():
    n, k = 11, 2
    rng = np.random.default_rng(1)
    order = rng.permutation(n)  # label i sits at position order[i] on the circle
    weight = gale_matrix(n, k)[order]
    sets = all_sets(n)
    batch = from_id_lists(sets, n)
    rule = rule_argmaxable(batch, k, label_order=order)
    lp = verify_label_sets(weight, None, sets, progress=False, dtype="float64")
    assert np.array_equal(rule, np.array([v.status == "argmaxable" for v in lp]))
    # The order matters: read in label-id order the rule gives wrong answers for this permutation.
    assert not np.array_equal(rule, rule_argmaxable(batch, k))
    # The front door with dft_k and label_order agrees, and checks the Gale claim exactly.
    front = verify_label_sets(weight, None, sets, dft_k=k, label_order=order, progress=False)
    assert [v.status for v in front] == [v.status for v in lp]
    assert front.dft_max_abs_error == 0.0


def test_rule_certificates_are_farkas_certificates():
    """Every rule "no" carries y >= 0 on 2k+2 rows with sum_i y_i sigma_i g_i = 0 (checked here with numpy)."""
    n, k = 12, 2
    order = np.random.default_rng(2).permutation(n)
    weight = gale_matrix(n, k)[order]
    sets = all_sets(n)
    result = verify_label_sets(weight, None, sets, dft_k=k, label_order=order, progress=False)
    rejected = [v for v in result if v.status == "unargmaxable"]
    assert len(rejected) == 2**n - count_dft_argmaxable(n, k)
    for verdict in rejected:
        assert verdict.method == "rule"
        rows, y = verdict.certificate_rows, verdict.certificate
        assert len(rows) == 2 * k + 2 and np.all(y > 0)
        sigma = np.where(np.isin(rows, verdict.labels), 1.0, -1.0)
        combination = (y * sigma) @ weight[rows]
        assert np.linalg.norm(combination) <= 1e-12 * np.sum(y * np.linalg.norm(weight[rows], axis=1))


def test_rule_certificate_none_for_accepted_sets():
    assert dft_rule_certificate(np.array([2, 3, 7]), 12, 2) is None  # two runs: 4 changes <= 4
    built = dft_rule_certificate(np.array([1, 4, 7]), 12, 2)  # three isolated labels: 6 changes
    assert built is not None and len(built[0]) == 6


def test_dft_with_slack_rule_yes_final_and_no_goes_to_lp():
    """With slack columns the front door must agree with a pure LP on every set, and use the LP only on rule-no."""
    n, k, slack = 10, 1, 2
    rng = np.random.default_rng(3)
    weight = np.hstack([gale_matrix(n, k), 0.3 * rng.standard_normal((n, slack))])
    sets = all_sets(n)
    with_rule = verify_label_sets(weight, None, sets, dft_k=k, progress=False, dtype="float64")
    pure_lp = verify_label_sets(weight, None, sets, progress=False, dtype="float64")
    assert [v.status for v in with_rule] == [v.status for v in pure_lp]
    rule = rule_argmaxable(from_id_lists(sets, n), k)
    methods = np.array([v.method for v in with_rule])
    assert np.all(methods[rule] == "rule") and np.all(methods[~rule] == "lp")
    statuses = np.array([v.status for v in with_rule])
    # Slack makes some sets argmaxable that G alone cannot output: more than C(n, 2k+1).
    assert (statuses == "argmaxable").sum() > count_dft_argmaxable(n, k)
    assert count_sign_patterns(n, 2 * k + 1 + slack, bias=False) >= (statuses == "argmaxable").sum()


def test_rule_only_false_gives_radius_and_witness():
    n, k = 9, 1
    weight = gale_matrix(n, k)
    sets = [[0], [0, 1, 2], [0, 4]]
    result = verify_label_sets(weight, None, sets, dft_k=k, rule_only=False, progress=False)
    assert [v.status for v in result] == ["argmaxable", "argmaxable", "unargmaxable"]
    for verdict in result[:2]:
        signs = np.where(np.isin(np.arange(n), verdict.labels), 1.0, -1.0)
        assert np.all(signs * (weight @ verdict.witness) > 0)
        assert verdict.relative_radius > 0 and verdict.epsilon_argmaxable
    assert result[2].relative_radius == 0.0 and result[2].epsilon_argmaxable is False


def test_dft_claim_and_label_order_are_checked():
    n, k = 10, 2
    weight = gale_matrix(n, k)
    with pytest.raises(ValueError, match="differs from the Gale matrix"):
        verify_label_sets(weight + 1e-3, None, [[0]], dft_k=k, progress=False)
    with pytest.raises(ValueError, match="same for every label"):
        verify_label_sets(weight, np.arange(n, dtype=float), [[0]], dft_k=k, progress=False)
    with pytest.raises(ValueError, match="permutation"):
        verify_label_sets(weight, None, [[0]], dft_k=k, label_order=np.zeros(n, dtype=int), progress=False)
    with pytest.raises(ValueError, match="together with dft_k"):
        verify_label_sets(weight, None, [[0]], label_order=np.arange(n), progress=False)
    # A constant bias is absorbed by the constant column: accepted, and the rule still applies.
    result = verify_label_sets(weight, np.full(n, -0.3), [[0, 5]], dft_k=k, progress=False)
    assert result[0].status == "argmaxable"


def test_counting_helpers_against_brute_force():
    for n in range(1, 11):
        for k in range(0, 4):
            strings = itertools.product((0, 1), repeat=n)
            brute = sum(1 for y in strings if sum(a != b for a, b in zip(y, y[1:])) <= 2 * k)
            assert count_dft_argmaxable(n, k) == brute
            assert count_dft_argmaxable(n, k) == count_sign_patterns(n, 2 * k + 1, bias=False)
        for size in range(0, n + 2):
            assert count_label_sets_up_to(n, size) == sum(
                1 for r in range(size + 1) for _ in itertools.combinations(range(n), r)
            )
    # Exact big integers: hand formula for n = 10^5, k = 3, and C(n, d) for n = 10^4, d = 384.
    n = 10**5
    assert count_label_sets_up_to(n, 3) == 1 + n + n * (n - 1) // 2 + n * (n - 1) * (n - 2) // 6
    assert count_sign_patterns(10**4, 384, bias=False) == 2 * sum(comb(10**4 - 1, j) for j in range(384))
    assert count_sign_patterns(5, 9, bias=True) == 2**5


@pytest.mark.parametrize(("n", "d", "bias"), [(7, 3, False), (6, 2, True)])
def test_counting_helpers_against_lp_enumeration(n, d, bias):
    """Generic random heads realise exactly the counted number of sign patterns (LP over all 2^n)."""
    rng = np.random.default_rng(4)
    weight = rng.standard_normal((n, d))
    b = rng.standard_normal(n) if bias else None
    result = verify_label_sets(weight, b, all_sets(n), progress=False, dtype="float64")
    assert result.counts()["undecided"] == 0
    assert result.counts()["argmaxable"] == count_sign_patterns(n, d, bias=bias)
