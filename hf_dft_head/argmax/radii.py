"""Which sets get a Chebyshev radius: the policy shared by the audit, the certificate and the ``evaluate`` metric.

The sign-change rule decides a DFT head's sets in microseconds, but the radius of a set it calls argmaxable needs
one LP over all ``n`` rows (seconds at ``n = 1e5``, tens of seconds at ``1e6``). :func:`verify_with_radius_policy`
therefore runs the engine with the rule's "yes" taken as is, keeps the radius of every set the LP decided (from
that LP), and computes the radii of the rule-decided argmaxable sets for all of them while ``sets x n`` stays
within :data:`RADIUS_ROW_BUDGET` label rows, else for a seeded random sample of ``RADIUS_ROW_BUDGET // n`` sets (none
above ``n = 250,000``, where one radius costs more than the budget: ~15 s at ``n = 1e6``), or for a requested number
of them (0: none). The budget is for heads of width ``m = 2k + 1 <= 21`` (k <= 10); a wider head's LP costs about
``(m / 21)^3`` times more (at ``n = 1e4``: ~0.3 s per radius at k = 10, 16-52 s when the LP is hard at k = 50), so
its budget is that much smaller (:func:`radius_sample_size`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .verify import ARGMAXABLE, Verdict, VerificationResult, verify_label_sets

#: Label rows (sets x n) of rule-decided radius LPs run by default; beyond it a sample of ``budget // n`` sets.
RADIUS_ROW_BUDGET = 250_000
#: The head width the budget is for (k = 10); wider heads get ``(RADIUS_BUDGET_WIDTH / m)^3`` of it.
RADIUS_BUDGET_WIDTH = 21


def radius_sample_size(
    requested: int | None, population: int, num_labels: int, width: int = RADIUS_BUDGET_WIDTH
) -> int:
    """How many of ``population`` rule-decided argmaxable sets get a radius LP: ``requested``, else
    ``RADIUS_ROW_BUDGET // n`` scaled by ``(21 / width)^3`` for heads wider than 21 columns (module docstring)."""
    if requested is not None:
        return min(population, int(requested))
    wide = max(int(width), RADIUS_BUDGET_WIDTH)
    wanted = RADIUS_ROW_BUDGET * RADIUS_BUDGET_WIDTH**3 // (max(num_labels, 1) * wide**3)
    return min(population, wanted)


def sets_digest(label_sets: Sequence[Sequence[int]]) -> str:
    """sha256 of a list of label sets (JSON of their id lists): what a certificate's radius sample names."""
    return hashlib.sha256(json.dumps([[int(i) for i in s] for s in label_sets]).encode()).hexdigest()


@dataclass
class RadiusPolicyResult:
    """The verdicts of :func:`verify_with_radius_policy`, one per set in the order given.

    ``answer``: the engine's first pass (its settings; the rule's "yes" taken as is). ``population``: indices of
    the sets the rule called argmaxable; ``chosen``: those whose radius was then computed by LP (all, a sample,
    none). ``radii``: whether radii were asked for at all.
    """

    verdicts: list[Verdict]
    answer: VerificationResult
    population: list[int]
    chosen: list[int]
    radii: bool

    @property
    def computed_for(self) -> str:
        """``"all"``, ``"sample"`` or ``"none"``: for which rule-decided argmaxable sets a radius was computed."""
        if not self.population:
            return "all" if self.radii else "none"
        if len(self.chosen) == len(self.population):
            return "all"
        return "sample" if self.chosen else "none"


def _verify_here(label_sets: Sequence[Sequence[int]], **engine: Any) -> VerificationResult:
    return verify_label_sets(label_sets=label_sets, **engine)


def verify_with_radius_policy(
    label_sets: Sequence[Sequence[int]],
    *,
    radii: bool = True,
    radius_sample: int | None = None,
    radius_seed: int = 0,
    num_labels: int | None = None,
    exact_radius: bool | None = None,
    progress: bool = False,
    verify: Callable[..., VerificationResult] | None = None,
    **engine: Any,
) -> RadiusPolicyResult:
    """:func:`~.verify.verify_label_sets` on ``label_sets`` (id lists) with the radius policy of the module docstring.

    ``engine``: the other arguments of ``verify_label_sets`` (``weight``, ``bias``, ``dft_k``, ``label_order``,
    ``epsilon``, ``box``, ``dtype``, ``n_jobs``, ...). ``radii=False`` takes the rule's "yes" without any radius
    LP. ``num_labels``: the head's labels for the budget (default: the rows of ``weight``; the audit passes ``n``
    when it adds rows for a feature bound). ``exact_radius`` (default: ``radii``): run every LP to optimality, else
    a radius is a proven lower bound that settles the epsilon decision. The sample is drawn with
    ``numpy.random.default_rng(radius_seed)`` from the rule-decided argmaxable sets in the order given; results do
    not depend on ``n_jobs``. ``verify(label_sets, **arguments)``: what runs the engine (default
    ``verify_label_sets`` in this process; the audit passes one that shares the sets over launched processes).
    """
    verify = verify or _verify_here
    sets = [list(s) for s in label_sets]
    exact = radii if exact_radius is None else exact_radius
    answer = verify(sets, **engine, exact_radius=exact, rule_only=True, progress=progress)
    verdicts = list(answer.verdicts)
    population = [i for i, v in enumerate(verdicts) if v.status == ARGMAXABLE and v.method == "rule"]
    num_labels = np.shape(engine["weight"])[0] if num_labels is None else num_labels
    width = np.shape(engine["weight"])[1]
    size = radius_sample_size(radius_sample, len(population), num_labels, width) if radii else 0
    chosen = population
    if size < len(population):
        picked = np.random.default_rng(radius_seed).choice(len(population), size=size, replace=False)
        chosen = [population[j] for j in sorted(picked.tolist())]
    if chosen and size:
        # Each chosen set alone, as before sampling existed: the rule's verdict with the LP's radius and witness.
        sampled = verify([sets[i] for i in chosen], **engine, exact_radius=exact, rule_only=False, progress=progress)
        for i, verdict in zip(chosen, sampled.verdicts):
            verdicts[i] = verdict
    else:
        chosen = []
    return RadiusPolicyResult(verdicts=verdicts, answer=answer, population=population, chosen=chosen, radii=radii)
