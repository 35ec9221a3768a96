"""Rule-decided audits scale with the labels in the sets: verdicts by the sign-change rule, radii for a stated sample.

References: sign changes counted by hand in circle order; the engine's one-LP-per-set path (``rule_only=False,
exact_radius=True``, what every audit ran before radii were sampled) for verdicts and radii; the in-memory quality
report for the streaming one. Also the engine's iteration bounds. The certificate's radius sample (recomputed by
verify, forged ones rejected) is tested in test_tampering.py, on its certified checkpoint.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import pytest
from scipy.optimize import linprog

import hf_dft_head.argmax.lp as lp
import hf_dft_head.argmax.radii as radii
import hf_dft_head.argmax.verify as engine
from hf_dft_head import audit
from hf_dft_head.argmax import verify_label_sets
from hf_dft_head.argmax.summary import summarise_audit_verdicts
from hf_dft_head.audit import VerifierOptions
from hf_dft_head.gale import gale_matrix
from hf_dft_head.metrics.quality import (
    QualityAccumulator,
    exact_match,
    macro_f1,
    micro_f1,
    multi_hot_from_label_ids,
    multilabel_quality_report,
)
from hf_dft_head.sigmoid_head import SigmoidHead

DATA = Path(__file__).parent / "data"


def changes_on_circle(label_set, order: np.ndarray, n: int) -> int:
    """Independent reference: sign changes of the 0/1 indicator laid out in circle order (not cyclic)."""
    indicator = np.zeros(n, dtype=np.int8)
    indicator[order[list(label_set)]] = 1
    return int(np.sum(indicator[1:] != indicator[:-1]))


def dft_head(n: int, k: int, seed: int = 0) -> SigmoidHead:
    """A pure DFT head ``G[order]`` (no slack, zero bias) with a random circle order, as find_sigmoid_head gives it."""
    order = np.random.default_rng(seed).permutation(n)
    return SigmoidHead(
        weight=gale_matrix(n, k)[order], bias=np.zeros(n), kind="dft", space="x", dft_k=k, label_order=order
    )


def random_sets(n: int, count: int, max_size: int, seed: int) -> list[tuple[int, ...]]:
    """``count`` distinct sorted label sets of 1..max_size labels, ordered by (size, ids) as audit_head orders them."""
    generator = np.random.default_rng(seed)
    sets = {
        tuple(sorted(generator.choice(n, size=int(size), replace=False).tolist()))
        for size in generator.integers(1, max_size + 1, count)
    }
    return sorted(sets, key=lambda s: (len(s), s))


@pytest.fixture(scope="module")
def small_case():
    """n = 60, k = 2: a third of the sets have more than 2k sign changes; the per-set LP reference, once."""
    n, k = 60, 2
    head = dft_head(n, k)
    sets = random_sets(n, 40, 7, seed=1)
    reference = verify_label_sets(
        head.weight, None, sets, dft_k=k, label_order=head.label_order, rule_only=False, exact_radius=True,
        progress=False,
    )  # fmt: skip
    return head, sets, reference


def test_rule_path_equals_the_per_set_lp_and_computes_every_radius_when_cheap(small_case) -> None:
    head, sets, reference = small_case
    results, settings = audit.verify_sets(head, sets, progress=False)
    expected = ["argmaxable" if changes_on_circle(s, head.label_order, 60) <= 4 else "unargmaxable" for s in sets]
    assert 5 < expected.count("unargmaxable") < len(sets) - 5
    assert [r.status for r in results] == [v.status for v in reference] == expected
    # The old path's radii exactly (the same LP on the same set), and its epsilon decisions.
    assert [r.radius for r in results] == [v.radius for v in reference]
    assert [r.epsilon_argmaxable for r in results] == [v.epsilon_argmaxable for v in reference]
    radius = settings["radius"]
    assert radius["computed_for"] == "all" and radius["seed"] is None and radius["sampled_sets_sha256"] is None
    assert radius["rule_decided_argmaxable_sets"] == radius["sample_size"] == expected.count("argmaxable")
    assert radius["lp_decided_sets"] == 0  # the rule's "no" comes with its own certificate, no LP
    assert {r.method for r in results} == {"rule"}


def test_radius_sample_is_seeded_stated_and_equals_the_per_set_lp(small_case) -> None:
    head, sets, reference = small_case
    results, settings = audit.verify_sets(head, sets, VerifierOptions(radius_sample=5, radius_seed=3), progress=False)
    assert [r.status for r in results] == [v.status for v in reference]
    population = [i for i, v in enumerate(reference) if v.status == "argmaxable"]
    chosen = sorted(population[j] for j in np.random.default_rng(3).choice(len(population), 5, replace=False))
    computed = [i for i, r in enumerate(results) if r.epsilon_argmaxable is not None and r.status == "argmaxable"]
    assert computed == chosen
    for i in chosen:
        assert results[i].radius == reference[i].radius and results[i].radius > 0
    assert all(results[i].radius is None for i in population if i not in chosen)
    radius = settings["radius"]
    assert radius == {
        **radius,
        "computed_for": "sample",
        "sample_size": 5,
        "seed": 3,
        "requested": 5,
        "rule_decided_argmaxable_sets": len(population),
        "sampled_sets_sha256": radii.sets_digest([sets[i] for i in chosen]),
    }
    # Same seed, same sample; another seed, another one; 0, none.
    assert audit.verify_sets(head, sets, VerifierOptions(radius_sample=5, radius_seed=3), progress=False)[1] == settings
    other = audit.verify_sets(head, sets, VerifierOptions(radius_sample=5, radius_seed=4), progress=False)[1]["radius"]
    assert other["sampled_sets_sha256"] != radius["sampled_sets_sha256"]
    none = audit.verify_sets(head, sets, VerifierOptions(radius_sample=0), progress=False)
    assert none[1]["radius"]["computed_for"] == "none"
    assert all(r.epsilon_argmaxable is None for r in none[0] if r.status == "argmaxable")
    # The summary says how many radii stand behind the epsilon figures.
    gold = summarise_audit_verdicts(results, {s: 1 for s in sets}, label_names=[str(i) for i in range(60)], k=2)
    assert gold["radius_computed"] == sum(row["radius_computed"] for row in gold["by_size"]) == 5
    assert gold["epsilon_argmaxable_share"] is None  # not every argmaxable set has a radius


def test_default_sample_fits_the_row_budget() -> None:
    assert radii.RADIUS_ROW_BUDGET == 250_000
    assert radii.radius_sample_size(None, 1000, 1_000_000) == 0  # one radius LP over 1M rows: ~15 s
    assert radii.radius_sample_size(None, 1000, 250_000) == 1
    assert radii.radius_sample_size(None, 1000, 100_000) == 2
    assert radii.radius_sample_size(None, 1000, 10_000) == 25
    assert radii.radius_sample_size(None, 1000, 250) == 1000
    assert radii.radius_sample_size(None, 20, 10_000) == 20
    assert radii.radius_sample_size(7, 40, 10_000) == 7 and radii.radius_sample_size(0, 40, 60) == 0
    # Wider heads (k > 10): the budget shrinks by (21 / (2k + 1))^3; k <= 10 keeps it; a requested size is kept.
    assert radii.radius_sample_size(None, 1000, 10_000, width=21) == 25
    assert radii.radius_sample_size(None, 1000, 10_000, width=11) == 25
    assert radii.radius_sample_size(None, 1000, 10_000, width=51) == 1  # 250,000 * 21^3 // (10^4 * 51^3)
    assert radii.radius_sample_size(None, 1000, 10_000, width=101) == 0  # one radius LP: 16-52 s here
    assert radii.radius_sample_size(None, 1000, 275, width=51) == 63
    assert radii.radius_sample_size(9, 1000, 10_000, width=101) == 9


def test_the_audit_passes_the_head_width_to_the_sample_size() -> None:
    """k = 12 (width 25) at 5,000 labels: 250,000 * 21^3 // (5,000 * 25^3) = 29 radii by default, not 50."""
    head = dft_head(5000, 12, seed=2)
    sets = [tuple(range(start, start + 3)) for start in range(0, 4800, 60)]  # 80 arcs of 3 neighbouring ids
    sets = [tuple(sorted(head.label_order.argsort()[list(s)].tolist())) for s in sets]  # ... on the circle
    _, settings = audit.verify_sets(head, sets, VerifierOptions(), progress=False)
    assert settings["radius"]["computed_for"] == "sample" and settings["radius"]["sample_size"] == 29


def test_rule_decides_a_200k_label_head_without_an_lp_per_set() -> None:
    n, k = 200_000, 10
    head = dft_head(n, k, seed=2)
    generator = np.random.default_rng(5)
    # Half the sets are runs of neighbouring circle positions (argmaxable at any size), half scattered labels.
    inverse = np.argsort(head.label_order)
    sets = []
    for size in generator.integers(1, 31, 200):
        if len(sets) % 2:
            start = int(generator.integers(0, n - 40))
            runs = [inverse[start : start + size // 2], inverse[start + 20 : start + 20 + size - size // 2]]
            sets.append(tuple(sorted(int(i) for i in np.concatenate(runs))))
        else:
            sets.append(tuple(sorted(generator.choice(n, size=int(size), replace=False).tolist())))
    sets = sorted(set(sets), key=lambda s: (len(s), s))
    start = time.perf_counter()
    results, settings = audit.verify_sets(head, sets, VerifierOptions(radius_sample=0), progress=False)
    seconds = time.perf_counter() - start
    expected = ["argmaxable" if changes_on_circle(s, head.label_order, n) <= 2 * k else "unargmaxable" for s in sets]
    assert [r.status for r in results] == expected
    assert 20 < expected.count("unargmaxable") < len(sets) - 20
    assert {r.method for r in results} == {"rule"} and settings["radius"]["computed_for"] == "none"
    assert seconds < 15.0, seconds  # ~1 s here; one LP per set would take ~3 s per set


def test_workers_default_to_the_cores() -> None:
    assert audit.resolve_workers(None) == audit.available_cores() and audit.resolve_workers(3) == 3
    assert VerifierOptions().workers is None and "workers" not in VerifierOptions().recorded()
    with pytest.raises(ValueError, match="--workers must be >= 1"):
        VerifierOptions(workers=0)
    with pytest.raises(ValueError, match="--radius-sample must be >= 0"):
        VerifierOptions(radius_sample=-1)


def test_quality_gathered_batch_by_batch_equals_the_whole_matrix() -> None:
    """The audit's streaming quality (QualityAccumulator over uneven batches) against the in-memory report, with
    tied scores, empty gold rows, and predicted sets from thresholds of the model's own."""
    generator = np.random.default_rng(9)
    n, rows = 50, 37
    scores = generator.integers(-3, 3, size=(rows, n)).astype(np.float32)  # many ties: the label-id rule decides
    gold = [sorted(generator.choice(n, int(size), replace=False).tolist()) for size in generator.integers(0, 6, rows)]
    targets = multi_hot_from_label_ids(gold, n)
    thresholds = generator.normal(0.0, 1.0, n)
    for predicted in (None, scores > thresholds):
        expected = multilabel_quality_report(scores, targets, ks=audit.QUALITY_KS)
        if predicted is not None:
            expected.update(
                micro_f1=micro_f1(predicted, targets),
                macro_f1=macro_f1(predicted, targets),
                exact_match=exact_match(predicted, targets),
            )
        accumulator = QualityAccumulator(n, ks=audit.QUALITY_KS)
        for start, stop in ((0, 5), (5, 6), (6, 30), (30, rows)):
            part = None if predicted is None else predicted[start:stop]
            accumulator.add(scores[start:stop], gold[start:stop], predicted=part)
        assert accumulator.rows == rows and accumulator.report() == expected  # exactly, key order included
        assert list(accumulator.report()) == list(expected)
    with pytest.raises(ValueError, match="holds label id 50, not in"):
        accumulator.add(scores[:2], [[1], [50]])
    with pytest.raises(ValueError, match="label id twice"):
        accumulator.add(scores[:1], [[3, 3]])


def test_results_do_not_depend_on_the_default_workers() -> None:
    """A dense head (LP-decided) with every available core, and with one: the same verdicts, radii and settings."""
    generator = np.random.default_rng(11)
    head = SigmoidHead(generator.normal(size=(30, 6)), generator.normal(-0.5, 0.2, 30), "dense", "x")
    sets = random_sets(30, 12, 4, seed=12)
    parallel = audit.verify_sets(head, sets, progress=False)  # workers=None: every available core
    serial = audit.verify_sets(head, sets, VerifierOptions(workers=1), progress=False)
    assert audit.resolve_workers(None) == audit.available_cores()
    assert parallel[1] == serial[1] and parallel[1]["radius"]["computed_for"] == "all"
    assert [(r.status, r.epsilon_argmaxable, r.method) for r in parallel[0]] == [
        (r.status, r.epsilon_argmaxable, r.method) for r in serial[0]
    ]
    assert np.array_equal([r.radius for r in parallel[0]], [r.radius for r in serial[0]], equal_nan=True)
    assert {r.status for r in serial[0]} == {"argmaxable", "unargmaxable"}


def test_a_pure_dft_heads_rule_rejected_sets_give_the_same_verdicts_on_every_core(monkeypatch) -> None:
    """Pure DFT heads use the cores by default too (their rule-rejected sets are LPs): a permuted circle order, sets
    the rule rejects (spread, and bunched on the circle), the 2k + 2-row proofs turned off (the forked workers
    inherit the patch) so that every one goes to the LP on a row budget; every core and one give the same."""
    monkeypatch.setattr(engine, "RULE_CERTIFICATE_ATTEMPTS", 0)
    n, k = 5000, 2
    head = dft_head(n, k, seed=4)
    generator = np.random.default_rng(5)
    sets = random_sets(n, 10, 9, seed=6)
    bunched = head.label_order.argsort()[200:260]  # the labels at 60 neighbouring circle positions
    sets += [tuple(sorted(generator.choice(bunched, 7, replace=False).tolist())) for _ in range(4)]
    options = VerifierOptions(rule_rejected_rows=300, radius_sample=3)
    parallel = audit.verify_sets(head, sets, options, progress=False)  # workers=None: every available core
    serial = audit.verify_sets(head, sets, dataclasses.replace(options, workers=1), progress=False)
    assert parallel[1] == serial[1]
    assert [(r.status, r.method, r.reason) for r in parallel[0]] == [(r.status, r.method, r.reason) for r in serial[0]]
    for a, b in zip(parallel[0], serial[0]):
        assert (a.certificate_rows is None) == (b.certificate_rows is None)
        assert a.certificate_rows is None or np.array_equal(a.certificate_rows, b.certificate_rows)
    rejected = [s for s in sets if changes_on_circle(s, head.label_order, n) > 2 * k]
    on_budget = [r for r in parallel[0] if "LP over" in r.reason and "of 5,000 rows" in r.reason]
    assert len(rejected) >= 8 and len(on_budget) == len(rejected)
    assert {r.status for r in on_budget} <= {"unargmaxable", "undecided"} and on_budget[0].status == "unargmaxable"


# ------------------------------------------------------------------------------------------- the engine's bounds


def test_a_solve_from_scratch_is_capped_in_iterations(monkeypatch) -> None:
    """No HiGHS run is unbounded: with the from-scratch cap at 1 iteration the full LP stops and says so."""
    data = np.load(DATA / "dense_head_radius_hang.npz")
    weight, bias, labels = data["weight"], data["bias"], data["label_set"].tolist()
    monkeypatch.setattr(lp, "SCRATCH_ITERATIONS_PER_ROW", 0.0)
    monkeypatch.setattr(lp, "SCRATCH_ITERATIONS_BASE", 1)
    verdict = verify_label_sets(weight, bias, [labels], constraint_generation=False, progress=False)[0]
    assert verdict.status == "undecided" and "Iteration limit" in verdict.reason, verdict.reason


def test_constraint_generation_over_budget_falls_back_to_one_full_lp(monkeypatch) -> None:
    """A DFT head's radius LP (n >> m: constraint generation) that spends its iteration budget is finished by one LP
    over all rows, with the same radius as the full LP."""
    n, k = 3000, 3
    head = dft_head(n, k, seed=7)
    labels = sorted(np.random.default_rng(8).choice(n, 3, replace=False).tolist())
    options = {"dft_k": k, "label_order": head.label_order, "rule_only": False, "exact_radius": True}
    reference = verify_label_sets(head.weight, None, [labels], constraint_generation=False, progress=False, **options)
    calls = []
    original = engine.maximise_radius

    def tight_budget(problem, initial_rows, **kwargs):
        if kwargs.get("max_iterations") is not None:
            kwargs["max_iterations"] = 1
        outcome = original(problem, initial_rows, **kwargs)
        calls.append((len(initial_rows), outcome.kind))
        return outcome

    monkeypatch.setattr(engine, "maximise_radius", tight_budget)
    verdict = verify_label_sets(head.weight, None, [labels], progress=False, **options)[0]
    assert ("budget" in {kind for _, kind in calls}) and calls[-1] == (n, "optimal"), calls
    assert verdict.status == "argmaxable" and verdict.radius_exact
    assert verdict.relative_radius == pytest.approx(reference[0].relative_radius, rel=1e-6)


def lp_margin_over_all_rows(weight: np.ndarray, labels) -> float:
    """Independent reference (scipy's linprog, not the engine): max t with sigma_i w_i . x >= t, |x|_inf <= 1, t <= 1.
    Rows scaled to unit norm; positive (beyond HiGHS's 1e-7 feasibility tolerance) iff the bias-free head realises
    the set."""
    weight = weight / np.linalg.norm(weight, axis=1, keepdims=True)
    n, m = weight.shape
    signs = -np.ones(n)
    signs[list(labels)] = 1.0
    # Variables (x, t); constraints -sigma_i w_i . x + t <= 0.
    a_ub = np.c_[-(signs[:, None] * weight), np.ones(n)]
    result = linprog(
        np.r_[np.zeros(m), -1.0], A_ub=a_ub, b_ub=np.zeros(n), bounds=[(-1, 1)] * m + [(None, 1)], method="highs"
    )
    assert result.status == 0, result.message
    return -result.fun


def test_rows_around_a_set_hold_its_labels_their_circle_neighbours_and_a_spread() -> None:
    n, k = 5000, 2
    head = engine.prepare_head(
        gale_matrix(n, k)[np.random.default_rng(1).permutation(n)],
        None,
        dft_k=k,
        label_order=np.random.default_rng(1).permutation(n),
    )
    labels = np.array(sorted(np.random.default_rng(2).choice(n, 9, replace=False)))
    rows = engine.rows_around_set(head, labels, 200)
    assert np.all(np.diff(rows) > 0) and len(rows) <= 200 and set(labels) <= set(rows.tolist())
    positions = set(head.label_order[rows].tolist())
    for p in head.label_order[labels]:  # the circle neighbours, not the id neighbours
        assert {(p - 1) % n, (p + 1) % n} <= positions
    spread = sorted(positions)
    assert max(np.diff(spread)) < 2 * n / 100  # about half the budget evenly around the circle
    # A set too large for the budget keeps its labels and their two neighbours.
    big = np.arange(0, n, 20)
    assert set(big) <= set(engine.rows_around_set(head, big, 100).tolist())


def test_rule_rejected_sets_decided_on_a_row_budget_agree_with_all_rows(monkeypatch) -> None:
    """With the 2k + 2-row certificates turned off, every rule-rejected set goes to the LP: on 300 of 6,000 rows it
    must give the all-rows verdicts, its certificates must hold for the whole head, and it must agree with scipy."""
    n, k = 6000, 2
    weight = gale_matrix(n, k)
    generator = np.random.default_rng(3)
    sets = [sorted(generator.choice(n, int(size), replace=False).tolist()) for size in generator.integers(4, 12, 12)]
    sets += [sorted(int(i) for i in (100 + generator.choice(60, 7, replace=False)))]  # bunched on the circle
    monkeypatch.setattr(engine, "RULE_CERTIFICATE_ATTEMPTS", 0)
    budget = verify_label_sets(weight, None, sets, dft_k=k, progress=False, rule_rejected_rows=300)
    full = verify_label_sets(weight, None, sets, dft_k=k, progress=False, rule_rejected_rows=None)
    assert budget.settings.rule_rejected_rows == 300 and full.settings.rule_rejected_rows is None
    assert [v.status for v in budget] == [v.status for v in full]
    assert budget.counts()["unargmaxable"] >= 10
    for labels, verdict in zip(sets, budget):
        assert changes_on_circle(labels, np.arange(n), n) > 2 * k
        assert "LP over" in verdict.reason and "of 6,000 rows" in verdict.reason
        if verdict.status == "unargmaxable":
            rows, y = verdict.certificate_rows, verdict.certificate
            signs = np.where(np.isin(rows, labels), 1.0, -1.0)
            assert np.all(y > 0) and np.abs((y * signs) @ weight[rows]).max() < 1e-12  # rows of the whole head
            assert lp_margin_over_all_rows(weight, labels) < 1e-6
    # The budget is only for pure DFT heads above it: at or below it every row is used.
    small = verify_label_sets(weight, None, sets[:2], dft_k=k, progress=False, rule_rejected_rows=n)
    assert all("LP over" not in v.reason for v in small)
    with pytest.raises(ValueError, match="rule_rejected_rows must be >= 0"):
        verify_label_sets(weight, None, sets[:1], dft_k=k, progress=False, rule_rejected_rows=-1)


def test_rule_rejected_rows_is_an_audit_option_recorded_for_verify() -> None:
    from hf_dft_head.certificate import _recorded_options

    assert VerifierOptions().rule_rejected_rows == engine.RULE_REJECTED_ROWS == 4096
    assert VerifierOptions(rule_rejected_rows=0).recorded()["rule_rejected_rows"] == 0
    with pytest.raises(ValueError, match="--rule-rejected-rows must be >= 0"):
        VerifierOptions(rule_rejected_rows=-5)
    # verify replays the recorded budget, not its own default.
    assert _recorded_options({"options": {"rule_rejected_rows": 512}}, None).rule_rejected_rows == 512


def test_a_witness_of_the_row_subset_is_not_trusted_for_the_whole_head(monkeypatch) -> None:
    """The subset LP sees only some rows: an "argmaxable" from it must be re-checked on all of them."""
    n, k = 6000, 2
    weight = gale_matrix(n, k)
    labels = [10, 500, 1500, 2500, 3500, 4500]  # 11 sign changes > 2k: the rule rejects it
    monkeypatch.setattr(engine, "RULE_CERTIFICATE_ATTEMPTS", 0)
    seen = []

    def subset_says_argmaxable(head, sub_labels, settings):
        seen.append(head.num_labels)
        witness = np.linalg.lstsq(head.weight, np.where(np.isin(np.arange(head.num_labels), sub_labels), 1.0, -1.0))
        return engine.Verdict(tuple(sub_labels.tolist()), engine.ARGMAXABLE, witness=witness[0])

    monkeypatch.setattr(engine, "_decide_lp", subset_says_argmaxable)
    verdict = verify_label_sets(weight, None, [labels], dft_k=k, progress=False, rule_rejected_rows=300)[0]
    assert seen and seen[0] <= 300  # the LP saw the subset only
    assert verdict.status == "undecided" and "witness failed validation" in verdict.reason
