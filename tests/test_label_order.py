"""Cyclic label orders from co-occurrence, and the sign-change statistics of an order.

References are independent of the module: sign changes by walking the 0/1 indicator around the circle one set
at a time, co-occurrence counted pair by pair in Python, tour optima by enumerating every permutation, and
planted instances whose best order is known by construction.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from hf_dft_head import label_order as lo
from hf_dft_head.argmax import from_id_lists, rule_argmaxable


def cyclic_changes_by_walk(labels, positions) -> int:
    """Reference: lay the set out on the circle and count neighbouring positions that differ, wrapping around."""
    n = len(positions)
    indicator = [0] * n
    for label in labels:
        indicator[positions[label]] = 1
    return sum(indicator[p] != indicator[(p + 1) % n] for p in range(n))


def random_sets(rng, n: int, count: int, max_size: int) -> list[list[int]]:
    return [sorted(rng.choice(n, size, replace=False).tolist()) for size in rng.integers(0, max_size + 1, count)]


def arcs(rng, hidden: np.ndarray, count: int, max_width: int) -> list[list[int]]:
    """Sets that are runs of 2..max_width consecutive labels of the circle ``hidden`` (wrapping around).

    In the hidden order every such set has exactly two sign changes, the minimum for a set that is neither
    empty nor full.
    """
    n = len(hidden)
    starts = rng.integers(0, n, count)
    widths = rng.integers(2, max_width + 1, count)
    return [sorted(hidden[(s + np.arange(w)) % n].tolist()) for s, w in zip(starts, widths)]


# ----------------------------------------------------------------------------------------------------------------
# Statistics of an order
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 3, 7, 40])
def test_sign_change_counts_match_walk_around_the_circle(n):
    rng = np.random.default_rng(n)
    sets = random_sets(rng, n, 200, n) + [[], list(range(n)), [0], [n - 1], sorted({0, n - 1})]
    for trial in range(3):
        positions = rng.permutation(n) if trial else np.arange(n)
        got = lo.sign_change_counts(sets, positions)
        assert got.dtype == np.int64
        assert got.tolist() == [cyclic_changes_by_walk(s, positions) for s in sets]
        # Same verdicts as the project's rule (linear count) for every k.
        batch = from_id_lists(sets, n)
        for k in range(0, n // 2 + 2):
            assert np.array_equal(got <= 2 * k, rule_argmaxable(batch, k, positions))


def test_guarantee_share_and_order_statistics_by_hand():
    # n = 6, identity order: {0,1,2} is one arc (2 changes), {0,2,4} three arcs (6), {} and the full set have
    # none, {5,0} is one arc across the wrap (2).
    sets = [[0, 1, 2], [0, 2, 4], [], list(range(6)), [0, 5]]
    positions = np.arange(6)
    assert lo.sign_change_counts(sets, positions).tolist() == [2, 6, 0, 0, 2]
    assert lo.guarantee_share(sets, positions, 1) == pytest.approx(4 / 5)
    assert lo.guarantee_share(sets, positions, 3) == 1.0
    # Moving label 2 next to label 0 and 4 next to 2 makes {0, 2, 4} one arc.
    moved = np.array([0, 3, 1, 4, 2, 5])
    assert lo.sign_change_counts(sets, moved).tolist() == [4, 2, 0, 0, 2]
    stats = lo.order_statistics({"train": sets, "empty": []}, positions, [1, 3])
    assert stats["train"] == {
        "sets": 5.0,
        "mean_sign_changes": 2.0,
        "max_sign_changes": 6.0,
        "share_k1": 0.8,
        "share_k3": 1.0,
    }
    assert stats["empty"]["sets"] == 0 and np.isnan(stats["empty"]["share_k1"])
    assert np.isnan(lo.guarantee_share([], positions, 2))


def test_statistics_reject_bad_input():
    with pytest.raises(ValueError, match="permutation"):
        lo.sign_change_counts([[0]], [0, 0, 1])
    with pytest.raises(ValueError, match="shape"):
        lo.sign_change_counts([[0]], np.arange(4), num_labels=5)
    with pytest.raises(ValueError, match="outside"):
        lo.sign_change_counts([[0, 7]], np.arange(4))
    with pytest.raises(ValueError, match="k must be"):
        lo.guarantee_share([[0]], np.arange(4), -1)
    with pytest.raises(ValueError, match="k must be"):
        lo.guarantee_share([[0]], np.arange(4), True)


# ----------------------------------------------------------------------------------------------------------------
# The objective: total sign changes = 2 sum f - 2 (co-occurrence along the tour)
# ----------------------------------------------------------------------------------------------------------------


def test_cooccurrence_matrix_matches_pair_counting():
    rng = np.random.default_rng(1)
    n = 15
    sets = random_sets(rng, n, 120, 6)
    expected = np.zeros((n, n))
    for s in sets:
        for u, v in itertools.permutations(s, 2):
            expected[u, v] += 1
    got = lo.cooccurrence_matrix(from_id_lists(sets, n))
    assert sp.issparse(got) and got.has_sorted_indices
    assert np.array_equal(got.toarray(), expected)


def test_total_sign_changes_equal_the_tour_objective():
    """The identity behind the method: minimising total sign changes = maximising co-occurrence along the tour."""
    rng = np.random.default_rng(2)
    n = 12
    sets = random_sets(rng, n, 80, 7)
    c = lo.cooccurrence_matrix(from_id_lists(sets, n)).toarray()
    frequency = np.bincount([label for s in sets for label in s], minlength=n)
    for _ in range(20):
        tour = rng.permutation(n)
        along = sum(c[tour[p], tour[(p + 1) % n]] for p in range(n))
        total = lo.sign_change_counts(sets, lo.positions_from_tour(tour)).sum()
        assert total == 2 * frequency.sum() - 2 * along


def test_cooccurrence_refuses_too_many_pairs(monkeypatch):
    monkeypatch.setattr(lo, "MAX_PAIRS", 10)
    with pytest.raises(ValueError, match=r"12 label pairs.*largest sets have \[4, 1\]"):
        lo.cooccurrence_matrix(from_id_lists([[0, 1, 2, 3], [4]], 5))


# ----------------------------------------------------------------------------------------------------------------
# The tour heuristic
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("trial", range(4))
def test_optimise_tour_reaches_the_enumerated_optimum_on_small_graphs(trial):
    rng = np.random.default_rng(10 + trial)
    m = 9
    sets = random_sets(rng, m, 25, 4)
    dense = lo.cooccurrence_matrix(from_id_lists(sets, m)).toarray()
    rest = np.array(list(itertools.permutations(range(1, m))))
    tours = np.hstack([np.zeros((len(rest), 1), dtype=int), rest])
    optimum = dense[tours, np.roll(tours, -1, axis=1)].sum(axis=1).max()
    got = lo.optimise_tour(sp.csr_matrix(dense), seed=trial)
    assert sorted(got.tolist()) == list(range(m))
    assert dense[got, np.roll(got, -1)].sum() == optimum
    # From a given start too (a random tour instead of the greedy one).
    improved = lo.optimise_tour(sp.csr_matrix(dense), seed=trial, start=rng.permutation(m))
    assert dense[improved, np.roll(improved, -1)].sum() == optimum


def test_local_search_keeps_its_bookkeeping_exact():
    """After many 2-opt / Or-opt moves and kicks, positions, cached edge weights and the tour agree."""
    rng = np.random.default_rng(3)
    m = 300
    sets = random_sets(rng, m, 2000, 8)
    w = lo.cooccurrence_matrix(from_id_lists(sets, m))
    ptr, ids, weights = lo._neighbour_lists(w, 8)
    start = rng.permutation(m)
    search = lo._TourSearch(w, start, ptr, ids, weights)
    before = search.weight()
    search.run(rng.permutation(m))
    for _ in range(50):
        search.run(np.asarray(search.kick(rng, 20)))
    assert search.moves > 100
    assert sorted(search.tour.tolist()) == list(range(m))
    assert np.array_equal(search.pos[search.tour], np.arange(m))
    dense = w.toarray()
    exact = dense[search.tour, np.roll(search.tour, -1)]
    np.testing.assert_array_equal(search.edge, exact)
    assert exact.sum() > before


# ----------------------------------------------------------------------------------------------------------------
# label_order
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", lo.METHODS)
def test_label_order_is_a_deterministic_permutation(method):
    rng = np.random.default_rng(4)
    n = 50
    sets = random_sets(rng, n, 400, 6)
    first = lo.label_order(sets, n, method, seed=7)
    assert first.dtype == np.int64 and first.shape == (n,)
    assert sorted(first.tolist()) == list(range(n))
    again = lo.label_order(from_id_lists(sets, n), n, method, seed=7)
    assert np.array_equal(first, again)


# Imports hf_dft_head.label_order in a child process without the package __init__ (which loads transformers):
# quick to start, and it shows the module needs neither torch nor transformers.
LIGHT_IMPORT = textwrap.dedent(
    f"""
    import sys, types
    package = types.ModuleType("hf_dft_head")
    package.__path__ = [{str(Path(lo.__file__).parent)!r}]
    sys.modules["hf_dft_head"] = package
    from hf_dft_head import label_order as lo
    assert "torch" not in sys.modules and "transformers" not in sys.modules, "label_order pulled in torch"
    """
)


def run_child(script: str) -> str:
    run = subprocess.run(
        [sys.executable, "-c", LIGHT_IMPORT + textwrap.dedent(script)], capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return run.stdout


def test_label_order_is_the_same_in_a_fresh_process():
    """Determinism across interpreter runs (hash seeds, allocation order), not just within one."""
    script = """
        import numpy as np
        rng = np.random.default_rng(5)
        sets = [sorted(rng.choice(80, s, replace=False).tolist()) for s in rng.integers(1, 7, 500)]
        print(lo.label_order(sets, 80, seed=3).tolist())
        """
    rng = np.random.default_rng(5)
    sets = [sorted(rng.choice(80, s, replace=False).tolist()) for s in rng.integers(1, 7, 500)]
    assert run_child(script).strip() == str(lo.label_order(sets, 80, seed=3).tolist())


@pytest.mark.parametrize("n", [30, 200])
def test_planted_arcs_are_recovered(n):
    """Sets are arcs of a hidden circle: the order must make every train and held-out set one arc again."""
    rng = np.random.default_rng(n)
    hidden = rng.permutation(n)  # label ids are shuffled around the planted circle
    train, held_out = arcs(rng, hidden, 20 * n, 6), arcs(rng, hidden, 500, 6)
    hidden_positions = lo.positions_from_tour(hidden)
    assert set(lo.sign_change_counts(train, hidden_positions).tolist()) == {2}
    positions = lo.label_order(train, n)
    assert set(lo.sign_change_counts(train, positions).tolist()) == {2}
    assert lo.guarantee_share(train, positions, 1) == 1.0
    assert lo.guarantee_share(held_out, positions, 1) == 1.0
    # Name order scatters the arcs: far from one arc per set, and k = 1 covers few of them.
    by_name = lo.sign_change_counts(train, np.arange(n))
    assert by_name.mean() > 5 and lo.guarantee_share(train, np.arange(n), 1) < 0.5
    # The frequency order knows nothing of adjacency here (frequencies are near uniform).
    assert lo.sign_change_counts(train, lo.label_order(train, n, "frequency")).mean() > 5


@pytest.mark.parametrize("n", [60, 300])  # dense eigensolver, then the sparse one (over 200 labels)
def test_planted_arcs_recovered_by_spectral_angle_too(n):
    rng = np.random.default_rng(8)
    train = arcs(rng, rng.permutation(n), 25 * n, 5)
    counts = lo.sign_change_counts(train, lo.label_order(train, n, "spectral"))
    assert counts.mean() < 2.5 < 5 < lo.sign_change_counts(train, np.arange(n)).mean()


def test_frequency_order_by_hand():
    # Frequencies: label 0 once, 1 three times, 2 never, 3 three times, 4 twice -> 1, 3 (tie by id), 4, 0, 2.
    sets = [[1, 3], [1, 3, 4], [0, 1, 3, 4]]
    positions = lo.label_order(sets, 5, "frequency")
    assert np.argsort(positions).tolist() == [1, 3, 4, 0, 2]
    assert lo.label_order(sets, 5, "name").tolist() == [0, 1, 2, 3, 4]


def test_unseen_and_isolated_labels_go_last_in_id_order():
    n = 12
    # 0..5 co-occur in a chain; 9 appears only alone; 6, 7, 8, 10, 11 never appear.
    sets = [[0, 1], [1, 2], [2, 3], [3, 4], [4, 5], [9], [9], []] * 3
    positions = lo.label_order(sets, n)
    tour = np.argsort(positions)
    assert tour[6:].tolist() == [6, 7, 8, 9, 10, 11]
    # The chain is laid out as one path, cut at its missing link (5 - 0), so no set wraps across the block.
    assert tour[:6].tolist() in ([0, 1, 2, 3, 4, 5], [5, 4, 3, 2, 1, 0])
    assert set(lo.sign_change_counts(sets, positions).tolist()) <= {0, 2}


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_tiny_label_counts(n):
    sets = [[0], list(range(n)), [], [n - 1]]
    for method in lo.METHODS:
        positions = lo.label_order(sets, n, method)
        assert sorted(positions.tolist()) == list(range(n))
    # No sets at all, and only empty sets: a valid permutation, the identity.
    assert lo.label_order([], n).tolist() == list(range(n))
    assert lo.label_order([[], []], n).tolist() == list(range(n))


def test_similarity_places_labels_without_cooccurrence():
    n = 10
    sets = [[0, 1], [1, 2], [3, 4], [4, 5]] * 4  # two chains; 6..9 never seen in train
    without = np.argsort(lo.label_order(sets, n))
    assert without[-4:].tolist() == [6, 7, 8, 9]
    # 7 resembles 2, the end of a chain: it joins the tour there, for free on the train sets.
    similarity = sp.csr_matrix(([1.0], ([7], [2])), shape=(n, n))  # symmetrised by label_order
    positions = lo.label_order(sets, n, similarity=similarity)
    tour = np.argsort(positions).tolist()
    assert tour[-3:] == [6, 8, 9]
    assert abs(tour.index(7) - tour.index(2)) == 1
    assert set(lo.sign_change_counts(sets, positions).tolist()) == {2}
    # Similar to 1 (inside a chain, whose edges each sit in 4 sets), 7 stays out of the chain at weight 0.5
    # (breaking 0-1 or 1-2 costs 4, gains 0.5) and goes inside it at weight 10 (gains 10).
    inner = sp.csr_matrix(([1.0], ([7], [1])), shape=(n, n))
    cheap = np.argsort(lo.label_order(sets, n, similarity=inner, similarity_weight=0.5)).tolist()
    assert set(lo.sign_change_counts(sets, lo.positions_from_tour(np.array(cheap))).tolist()) == {2}
    strong = np.argsort(lo.label_order(sets, n, similarity=inner, similarity_weight=10.0)).tolist()
    assert abs(strong.index(7) - strong.index(1)) == 1


def test_name_similarity_tokens():
    names = ["aid_related", "medical_aid", "Medical products", "weather", "other_weather", "x"]
    s = lo.name_similarity(names)
    assert s.shape == (6, 6) and s.diagonal().sum() == 0
    assert s[0, 1] > 0 and s[1, 2] > 0 and s[3, 4] > 0
    assert s[0, 3] == 0 and s[5].nnz == 0
    np.testing.assert_allclose(s.toarray(), s.toarray().T)
    assert s.max() <= 1 + 1e-12
    # A token in more than max_labels_per_token names is ignored.
    assert lo.name_similarity(names, max_labels_per_token=1).nnz == 0


def test_label_order_rejects_bad_input():
    sets = [[0, 1]]
    with pytest.raises(ValueError, match="method must be one of"):
        lo.label_order(sets, 3, "alphabetical")
    with pytest.raises(ValueError, match="weighting"):
        lo.label_order(sets, 3, weighting="jaccard")
    with pytest.raises(ValueError, match="num_labels"):
        lo.label_order(sets, 0)
    with pytest.raises(ValueError, match="outside"):
        lo.label_order([[0, 5]], 3)
    with pytest.raises(ValueError, match="more than once"):
        lo.label_order([[1, 1]], 3)
    with pytest.raises(ValueError, match="neighbours"):
        lo.label_order(sets, 3, neighbours=0)
    with pytest.raises(ValueError, match="scipy.sparse"):
        lo.label_order(sets, 3, similarity=np.ones((3, 3)))
    with pytest.raises(ValueError, match="shape"):
        lo.label_order(sets, 3, similarity=sp.eye(4, format="csr"))
    with pytest.raises(ValueError, match="non-negative"):
        lo.label_order(sets, 3, similarity=-sp.eye(3, format="csr"))
    with pytest.raises(ValueError, match="similarity is used by"):
        lo.label_order(sets, 3, "frequency", similarity=sp.eye(3, format="csr"))
    with pytest.raises(ValueError, match="similarity_weight"):
        lo.label_order(sets, 3, similarity=sp.eye(3, format="csr"), similarity_weight=float("nan"))
    with pytest.raises(ValueError, match="kicks"):
        lo.label_order(sets, 3, kicks=-1)
    with pytest.raises(ValueError, match="seed"):
        lo.label_order(sets, 3, seed=1.5)
    with pytest.raises(ValueError, match="permutation"):
        lo.optimise_tour(sp.eye(12, format="csr"), start=np.zeros(12, dtype=int))


@pytest.mark.slow  # about 5 s of local search over 20,000 labels, plus a child process
def test_twenty_thousand_labels_fast_and_without_dense_matrices():
    """n = 20,000 power-law labels in a child process whose address space cannot hold an n x n matrix."""
    pytest.importorskip("resource")
    if not Path("/proc/self/statm").exists():
        pytest.skip("needs /proc to measure the address space")
    script = """
        import resource, time
        import numpy as np

        n = 20_000
        rng = np.random.default_rng(0)
        hidden = rng.permutation(n)
        popularity = 1.0 / np.arange(1, n + 1)
        anchors = rng.choice(n, 30_000, p=popularity / popularity.sum())
        sets = [hidden[(a + np.arange(s)) % n] for a, s in zip(anchors, rng.integers(1, 8, len(anchors)))]
        # Room for the work arrays but not for an n x n matrix of even one byte per entry (400 MB).
        with open("/proc/self/statm") as f:
            used = int(f.read().split()[0]) * resource.getpagesize()
        resource.setrlimit(resource.RLIMIT_AS, (used + 250 * 2**20, resource.RLIM_INFINITY))
        start = time.perf_counter()
        positions = lo.label_order(sets, n)
        seconds = time.perf_counter() - start
        try:
            np.ones((n, n), dtype=np.uint8)
            dense = "allowed"
        except MemoryError:
            dense = "refused"
        assert sorted(positions.tolist()) == list(range(n))
        changes = lo.sign_change_counts(sets, positions).mean(), lo.sign_change_counts(sets, np.arange(n)).mean()
        print(seconds, dense, *changes)
        """
    seconds, dense, ordered, by_name = run_child(script).split()
    assert dense == "refused"  # the limit really forbids a dense n x n matrix
    assert float(seconds) < 120
    assert float(ordered) < 0.5 * float(by_name)
