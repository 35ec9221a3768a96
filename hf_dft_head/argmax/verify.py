"""Front door of the argmaxability engine: ``verify_label_sets`` and its verdicts.

Pipeline for every label set (sign pattern ``sigma``: +1 on the set, -1 elsewhere):

1. DFT heads (``dft_k`` given, and the first ``2k + 1`` columns bit for bit the float64
   :func:`hf_dft_head.gale.gale_matrix`): the sign-change rule, vectorised over all sets. The rule is a
   theorem about the exact (real) ``G``: its "yes" means the DFT layer in exact arithmetic realises the
   set (with slack columns too: slack inputs zero); it does not check the float64 or float32 rounding of
   ``G`` (``rule_only=False`` adds an LP witness that does). Without slack columns its "no" is backed by a
   Farkas certificate built from ``2k + 2`` rows (no LP), proven in exact arithmetic over the float64
   matrix; with slack columns, or if that proof fails, the "no" goes to the LP (for a pure DFT head with more than
   ``rule_rejected_rows`` labels, the LP over that many rows around the set: :func:`rows_around_set`).
2. Any other set, in stages that stop as soon as the status *and* the epsilon decision are proven:

   a. the Chebyshev LP restricted to a small subspace (the set's rows and the most threatening
      other rows): a witness with relative radius >= epsilon, in milliseconds, for most sets of
      well-separated heads;
   b. the min-norm point of the convex hull of the signed homogenised rows (non-negative least
      squares with row generation): exact status with no box, either a Farkas certificate
      (0 is in the hull) or a witness; then, if that witness is inside the box but its radius is
      below epsilon, a subspace LP around it to re-centre;
   c. constraint generation on the full boxed Chebyshev LP (:mod:`.lp`) for what is still open:
      it stops when a witness reaches epsilon, when the dual simplex proves the radius below
      epsilon, or at the optimum (``exact_radius=True``); a non-positive optimum gives a
      certificate from the duals, and if the box hides a region lying farther out, the
      homogenised LP decides exactly.

   ``constraint_generation=False`` skips all this and solves one LP over all rows per set (the
   paper's approach), for comparison.
3. Every verdict is proven over the float64 values of ``(W, b)`` taken as exact rationals (:mod:`.exact`):
   "argmaxable" (method ``"lp"``) only with a witness ``x`` whose signs hold in exact arithmetic *and* with
   the logits computed in the model's dtype; "unargmaxable" only with a Farkas certificate proven in exact
   arithmetic (no ``x`` anywhere); everything else "undecided" with its reason. A region that exists in
   exact arithmetic but below the dtype's resolution ends "undecided" with its exact witness attached
   (``witness_exact=True``, ``witness_in_dtype=False``).

Verdicts do not depend on ``n_jobs``: every set is solved on its own, in a fresh HiGHS model.
"""

from __future__ import annotations

import contextlib
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field

import numpy as np
from tqdm.auto import tqdm

from ..gale import check_label_order, dft_width, gale_matrix
from .exact import prove_box_empty, prove_farkas
from .label_sets import as_label_sets, signs_from_labels
from .lp import (
    CERTIFICATE_TOLERANCE,
    DEFAULT_BOX,
    DEFAULT_EPSILON,
    Problem,
    check_witness,
    maximise_radius,
    min_norm_point,
    normalise_dtype_name,
    polish_certificate,
)
from .rule import circle_positions, count_sign_changes, dft_rule_certificate, labels_by_position

#: With at most this many usable rows per dimension (``n <= 2 (m + 1)``, e.g. a dense head over d features with
#: n ~ d labels) the boxed LP starts from all rows: constraint generation would add most of them, solve by solve.
FULL_LP_ROWS_PER_DIMENSION = 2

#: Choices of 2k + 2 rows tried for the certificate of a set the DFT rule rejects, before the LP (each costs about a
#: millisecond; labels bunched on the circle can make one choice's dependency too lopsided for the float64 G).
RULE_CERTIFICATE_ATTEMPTS = 4

#: Rows of the LP that tries to prove, for the stored head, a set the DFT rule rejects when none of those 2k + 2-row
#: certificates holds (pure DFT heads with more labels than this): a certificate on a subset of the rows holds for
#: all of them, and one for the rounded G lies near the set's runs. Over all rows this LP cost 5-10 s per set at
#: n = 1M and left 23 of 25 such sets undecided anyway (the region of the rounded G, if any, is below float64).
RULE_REJECTED_ROWS = 4096

ARGMAXABLE = "argmaxable"
UNARGMAXABLE = "unargmaxable"
UNDECIDED = "undecided"


@dataclass
class Verdict:
    """The engine's answer for one label set.

    Attributes:
        labels: the label ids of the set (sorted).
        status: ``"argmaxable"``, ``"unargmaxable"`` or ``"undecided"``.
        radius: Chebyshev radius of the set's region inside the box, in input units: a proven
            lower bound (the witness's distance to the nearest hyperplane), equal to the
            radius to solver accuracy when ``radius_exact``; ``0.0`` when unargmaxable;
            ``None`` when not computed (rule-only verdicts, undecided).
        radius_upper: proven upper bound on that radius when known (an LP optimum), else ``None``.
        relative_radius: ``radius / box``.
        radius_exact: whether ``radius`` is the LP optimum rather than a bound.
        epsilon_argmaxable: ``relative_radius >= epsilon`` proven (True), disproven (False), or
            ``None`` when the radius was not computed.
        witness: ``(m,)`` input ``x`` realising the set: its signs hold in exact arithmetic over the float64
            head and with the logits computed in the model dtype (argmaxable); on an undecided verdict, an
            input whose signs hold in exact arithmetic only (``witness_in_dtype`` False).
        certificate: float64 approximation of an exact Farkas certificate ``y >= 0`` on ``certificate_rows``
            (the exact one is the unique null vector of those signed rows; see
            :func:`.lp.check_farkas_certificate`), scaled so that ``sum y_i ||w_i|| = 1``.
        certificate_rows: int row ids (labels) that ``certificate`` refers to.
        method: ``"rule"`` (the DFT sign-change rule decided) or ``"lp"``.
        reason: a human-readable justification.
        outside_box: argmaxable, and proven that no input with ``|x|_inf <= box`` realises the set
            (the witness lies outside; radius inside the box is 0). Matters when the box is a true
            bound on the inputs, e.g. tanh features.
        seconds, cpu_seconds: wall-clock and CPU time spent on this set (0 for sets decided by
            the vectorised rule alone).
        witness_exact: the witness's signs hold in exact arithmetic over the float64 head (``None``: no
            witness).
        witness_in_dtype: the witness's signs hold with the logits computed in the model's dtype
            (``None``: no witness).
    """

    labels: tuple[int, ...]
    status: str
    radius: float | None = None
    radius_upper: float | None = None
    relative_radius: float | None = None
    radius_exact: bool = False
    epsilon_argmaxable: bool | None = None
    witness: np.ndarray | None = None
    certificate: np.ndarray | None = None
    certificate_rows: np.ndarray | None = None
    method: str = "lp"
    reason: str = ""
    outside_box: bool = False
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    witness_exact: bool | None = None
    witness_in_dtype: bool | None = None

    def to_dict(self) -> dict:
        """JSON-friendly dict (arrays become lists)."""
        out = asdict(self)
        out["labels"] = list(self.labels)
        for key in ("witness", "certificate", "certificate_rows"):
            value = getattr(self, key)
            out[key] = None if value is None else np.asarray(value).tolist()
        return out


@dataclass
class Head:
    """A validated head in its own input space, with the data the LP reuses for every set.

    Attributes:
        weight: ``(n, m)`` float64; bias: ``(n,)`` float64.
        norms: ``(n,)`` row norms; unit_rows: ``(n, m)`` ``w_i / ||w_i||``; unit_bias: ``b_i / ||w_i||``.
        usable: rows with non-zero norm.
        dft_k: DFT parameter when the first ``2k + 1`` columns are ``G(n, k)[label_order]``.
        label_order: ``(n,)`` circle positions (``None``: identity); position_labels: its inverse, ``(n,)``, the
            label at each circle position (``None`` with it).
        slack_dims: columns after the DFT block.
        dft_max_abs_error: ``max |W[:, :2k+1] - G[label_order]|`` (``None`` without ``dft_k``).
        dft_rule: the sign-change rule applies: the DFT block is bit for bit the float64 ``gale_matrix``
            and the bias is exactly constant. ``False`` with ``dft_k`` set: a near-``G`` head accepted
            by ``dft_atol``, decided by the LP alone.
    """

    weight: np.ndarray
    bias: np.ndarray
    norms: np.ndarray
    unit_rows: np.ndarray
    unit_bias: np.ndarray
    usable: np.ndarray
    dft_k: int | None = None
    label_order: np.ndarray | None = None
    position_labels: np.ndarray | None = None
    slack_dims: int = 0
    dft_max_abs_error: float | None = None
    dft_rule: bool = False
    _lifted: tuple | None = field(default=None, repr=False)

    @property
    def num_labels(self) -> int:
        return self.weight.shape[0]

    @property
    def dim(self) -> int:
        return self.weight.shape[1]


def prepare_head(weight, bias=None, *, dft_k: int | None = None, label_order=None, dft_atol: float = 0.0) -> Head:
    """Validate a head given as its effective matrix and bias (numpy arrays or tensors).

    Args:
        weight: ``(n, m)`` effective matrix in the head's own input space.
        bias: ``(n,)`` or ``None`` (zero).
        dft_k: claim that ``weight[:, :2k+1]`` equals ``G(n, k)`` (rows permuted by
            ``label_order``), checked against :func:`hf_dft_head.gale.gale_matrix` bit for bit (as
            ``DFTHead.effective_head()`` returns it): the sign-change rule is a theorem about ``G`` only.
            This guards matrices a caller builds (a float32-rounded or permuted ``G`` is refused). It does not
            check a model's layer: ``effective_head()`` is itself ``gale_matrix(n, k)[label_order]``, so for
            the package's own heads the comparison holds by construction. That the layer's forward pass computes
            ``G`` is checked by probing it (:func:`hf_dft_head.certificate_checks.check_dft_layer`).
        label_order: ``(n,)`` position on the circle of each label; only with ``dft_k``.
        dft_atol: largest deviation from ``G`` (and spread of the bias) accepted for a head that is not
            ``G`` bit for bit, e.g. float32-rounded ``G`` (~1e-9); such a head is decided by the LP alone
            (``dft_rule`` False), never by the rule. Default 0: such heads are refused.

    Raises:
        ValueError: wrong shapes, NaN/inf (naming the row), a failed DFT claim, a bias that is
            not constant over labels under ``dft_k`` (the rule needs it absorbed by ``G``'s
            constant column), or ``label_order`` without ``dft_k``.
    """
    weight = np.asarray(weight, dtype=np.float64)
    if weight.ndim != 2 or weight.shape[0] == 0 or weight.shape[1] == 0:
        raise ValueError(f"weight must be a non-empty 2-D array (num_labels, dim), got shape {weight.shape}.")
    n, m = weight.shape
    bad_rows = np.flatnonzero(~np.all(np.isfinite(weight), axis=1))
    if len(bad_rows):
        raise ValueError(f"weight row {bad_rows[0]} contains NaN or inf ({len(bad_rows)} such rows): fix the head.")
    bias = np.zeros(n) if bias is None else np.asarray(bias, dtype=np.float64)
    if bias.shape != (n,):
        raise ValueError(f"bias must have shape ({n},) to match weight {weight.shape}, got {bias.shape}.")
    bad_bias = np.flatnonzero(~np.isfinite(bias))
    if len(bad_bias):
        raise ValueError(f"bias entry {bad_bias[0]} is {bias[bad_bias[0]]}: every bias must be finite.")
    norms = np.linalg.norm(weight, axis=1)
    usable = norms > 0
    safe = np.where(usable, norms, 1.0)
    head = Head(weight, bias, norms, weight / safe[:, None], bias / safe, usable)
    if label_order is not None and dft_k is None:
        raise ValueError("label_order gives circle positions for the DFT rule: pass it together with dft_k.")
    if dft_k is None:
        return head
    if not isinstance(dft_k, (int, np.integer)) or dft_k < 1:
        raise ValueError(f"dft_k must be an integer >= 1, got {dft_k!r}.")
    width = dft_width(dft_k)
    if width > m or width > n:
        raise ValueError(f"dft_k={dft_k} needs 2k+1 = {width} <= dim {m} and <= num_labels {n}.")
    order = None if label_order is None else check_label_order(label_order, n)
    gale = gale_matrix(n, int(dft_k))
    if order is not None:
        gale = gale[order]
    error = float(np.abs(weight[:, :width] - gale).max())
    if error > dft_atol:
        raise ValueError(
            f"dft_k={dft_k}: weight[:, :{width}] differs from the Gale matrix G({n}, {dft_k}) in float64 by up to "
            f"{error:.3g} (> dft_atol={dft_atol:g}); the sign-change rule is a theorem about G only. Pass the "
            f"head's effective matrix [G | S] in float64 as DFTHead.effective_head() returns it (G from "
            f"hf_dft_head.gale.gale_matrix, not rounded to float32), the right label_order, or dft_k=None to "
            f"decide every set by the LP (a positive dft_atol does the same while checking the claim)."
        )
    spread = float(np.ptp(bias))
    if spread > dft_atol * max(1.0, float(np.abs(bias).max())):
        raise ValueError(
            "with dft_k the bias must be the same for every label (it is absorbed by G's constant column); "
            "fold the head's bias into x or pass dft_k=None to use the LP only."
        )
    head.dft_k = int(dft_k)
    head.label_order = order
    head.position_labels = None if order is None else labels_by_position(order)
    head.slack_dims = m - width
    head.dft_max_abs_error = error
    head.dft_rule = error == 0.0 and spread == 0.0
    return head


@dataclass
class Settings:
    """Options of :func:`verify_label_sets` that workers need (documented there)."""

    box: float = DEFAULT_BOX
    epsilon: float = DEFAULT_EPSILON
    dtype: str = "float32"
    exact_radius: bool = False
    rule_only: bool = True
    constraint_generation: bool = True
    subspace_search: bool = True
    certificate_tol: float = CERTIFICATE_TOLERANCE
    time_limit: float | None = None
    add_rows: int | None = None
    rule_rejected_rows: int | None = RULE_REJECTED_ROWS


@dataclass
class VerificationResult:
    """All verdicts of one call, in input order, plus what was checked about the head.

    Attributes:
        verdicts: one :class:`Verdict` per input set.
        num_labels, dim: shape of the head.
        dft_k, slack_dims, dft_max_abs_error: the DFT claim and its measured deviation.
        settings: the options used.
        dft_rule: whether the sign-change rule was used (the DFT block is bit for bit the float64 ``G``).
    """

    verdicts: list[Verdict]
    num_labels: int
    dim: int
    dft_k: int | None
    slack_dims: int
    dft_max_abs_error: float | None
    settings: Settings = field(default_factory=Settings)
    dft_rule: bool = False

    def __len__(self) -> int:
        return len(self.verdicts)

    def __iter__(self):
        return iter(self.verdicts)

    def __getitem__(self, i: int) -> Verdict:
        return self.verdicts[i]

    @property
    def statuses(self) -> list[str]:
        return [v.status for v in self.verdicts]

    def counts(self) -> dict[str, int]:
        """Number of sets per status."""
        out = {ARGMAXABLE: 0, UNARGMAXABLE: 0, UNDECIDED: 0}
        for v in self.verdicts:
            out[v.status] += 1
        return out

    def to_dict(self) -> dict:
        """JSON-friendly dict."""
        return {
            "num_labels": self.num_labels,
            "dim": self.dim,
            "dft_k": self.dft_k,
            "slack_dims": self.slack_dims,
            "dft_max_abs_error": self.dft_max_abs_error,
            "dft_rule": self.dft_rule,
            "settings": asdict(self.settings),
            "counts": self.counts(),
            "verdicts": [v.to_dict() for v in self.verdicts],
        }


def _certificate_verdict(head: Head, labels: np.ndarray, signs, rows, y, s: Settings, method: str, reason: str):
    """An "unargmaxable" verdict if the support of ``y`` (on ``rows``) carries an exact Farkas certificate, else
    ``None``. The verdict stores a float64 approximation of that exact certificate, on its (possibly smaller)
    support, scaled so that ``sum y_i ||w_i|| = 1``."""
    keep = y > 0
    proof = prove_farkas(head.weight, head.bias, signs, rows[keep], y[keep])
    if not proof.valid:
        return None
    rows, y = proof.rows, proof.weights
    scale = float(y @ head.norms[rows])
    y = y / scale if scale > 0 else y / y.sum()
    residual = float(np.linalg.norm((y * signs[rows]) @ head.weight[rows]))
    return Verdict(
        tuple(labels.tolist()),
        UNARGMAXABLE,
        radius=0.0,
        radius_upper=0.0,
        relative_radius=0.0,
        radius_exact=False,
        epsilon_argmaxable=False,
        certificate=y,
        certificate_rows=rows,
        method=method,
        reason=f"{reason}; Farkas certificate on {len(rows)} rows proven in exact arithmetic ({proof.reason}; "
        f"float residual {residual:.2g})",
    )


def _witness_verdict(head, labels, signs, x, s: Settings, *, upper, exact, reason):
    """An "argmaxable" verdict if the signs of ``x`` hold in exact arithmetic and in the model's dtype, else an
    "undecided" one (which keeps ``x`` when only the dtype check failed: the region is real but too thin)."""
    check = check_witness(head.weight, head.bias, signs, x, dtype=s.dtype, box=s.box, norms=head.norms)
    label_tuple = tuple(labels.tolist())
    if not check:
        if check.exact:
            return Verdict(
                label_tuple,
                UNDECIDED,
                radius_upper=None if upper is None else upper * s.box,
                witness=x,
                witness_exact=True,
                witness_in_dtype=False,
                reason=f"region exists in exact arithmetic but is below the resolution of {s.dtype}: {check.reason} "
                f"({reason})",
            )
        return Verdict(
            label_tuple,
            UNDECIDED,
            radius_upper=None if upper is None else upper * s.box,
            reason=f"witness failed validation: {check.reason} ({reason})",
        )
    relative = check.relative_radius
    if upper is not None and not exact:
        decided = relative >= s.epsilon or upper < s.epsilon
        epsilon_flag = relative >= s.epsilon if decided else None
    else:
        epsilon_flag = relative >= s.epsilon
    return Verdict(
        label_tuple,
        ARGMAXABLE,
        radius=relative * s.box,
        radius_upper=None if upper is None else upper * s.box,
        relative_radius=relative,
        radius_exact=exact,
        epsilon_argmaxable=epsilon_flag,
        witness=x,
        witness_exact=True,
        witness_in_dtype=True,
        reason=f"{reason}; witness: {check.reason}",
    )


def _subspace_witness(head, labels, signs, problem: Problem, rows, basis, add_rows, s: Settings, reason: str):
    """The Chebyshev LP over ``rows`` restricted to ``span(basis)`` (``(m, b)``), stopped once the radius is below
    epsilon. Returns ``(outcome, verdict)``: an argmaxable verdict (validated witness) when the LP proves a radius of at
    least epsilon, else ``None``."""
    outcome = maximise_radius(
        problem,
        rows,
        exact=False,
        epsilon=s.epsilon,
        basis=basis,
        add_rows=add_rows,
        time_limit=s.time_limit,
        stop_below=s.epsilon,
    )
    if outcome.kind in ("optimal", "early") and outcome.rho_lower >= s.epsilon:
        verdict = _witness_verdict(head, labels, signs, s.box * outcome.u, s, upper=None, exact=False, reason=reason)
        if verdict.status == ARGMAXABLE:
            return outcome, verdict
    return outcome, None


def _subspace_basis(problem: Problem, positives: np.ndarray, extra: np.ndarray, extra_vector=None) -> np.ndarray:
    """Orthonormal ``(m, q)`` basis of the span of the rows ``positives`` and ``extra`` (and ``extra_vector``)."""
    chosen = np.unique(np.r_[positives, extra])
    vectors = problem.unit_rows[chosen]
    if extra_vector is not None:
        vectors = np.vstack([extra_vector / max(np.linalg.norm(extra_vector), 1e-300), vectors])
    q, r = np.linalg.qr(vectors.T)
    keep = np.abs(np.diag(r)) > 1e-10
    return q[:, keep]


def _lifted_problem(head: Head, signs: np.ndarray) -> tuple[Problem, np.ndarray, float]:
    """The homogenised system, its lifted row norms ``nu`` (``(n,)``) and the scale ``tau``.

    Row ``i`` is ``(w_i / ||w_i||, b_i / (||w_i|| tau)) / nu_i`` acting on ``(u, t)`` with
    ``x = tau u / t``; the extra last row is ``t > 0``. A strict solution is a witness anywhere
    (no box), and a zero convex combination of the signed rows is a Farkas certificate. Any
    ``tau > 0`` gives the same answers; ``tau`` = the largest ``|b_i| / ||w_i||`` keeps the last
    coordinate of the rows of order one, which keeps the geometry well conditioned. The
    unsigned rows do not depend on the set and are built once per head.
    """
    n, m = head.weight.shape
    if head._lifted is None:
        scale = float(np.abs(head.unit_bias[head.usable]).max(initial=0.0)) or 1.0
        offsets = head.unit_bias / scale
        lifted_norms = np.sqrt(1.0 + offsets**2)
        unit = np.empty((n + 1, m + 1))
        unit[:n, :m] = head.unit_rows / lifted_norms[:, None]
        unit[:n, m] = offsets / lifted_norms
        unit[n] = 0.0
        unit[n, m] = 1.0
        head._lifted = (unit, lifted_norms, scale, np.r_[head.usable, True])
    unit, lifted_norms, scale, usable = head._lifted
    return Problem(unit, np.zeros(n + 1), np.r_[signs, 1.0], usable), lifted_norms, scale


def _lifted_certificate(head, labels, signs, rows, weights, lifted_norms, s: Settings, reason: str):
    """Map weights on lifted rows (the ``t`` row dropped) to a checked certificate verdict, or ``None``."""
    n = head.num_labels
    keep = rows < n
    rows, weights = rows[keep], weights[keep]
    if len(rows) == 0:
        return None
    return _certificate_verdict(
        head, labels, signs, rows, weights / (lifted_norms[rows] * head.norms[rows]), s, "lp", reason
    )


def _decide_lp(head: Head, labels: np.ndarray, s: Settings) -> Verdict:
    """Decide one set without the rule. See the module docstring for the stages."""
    n, m = head.weight.shape
    label_tuple = tuple(labels.tolist())
    signs = signs_from_labels(labels, n)
    constant = np.flatnonzero(~head.usable & (signs * head.bias <= 0))
    if len(constant):
        row = constant[:1]
        reason = f"row {row[0]} of weight is zero and its bias has the wrong sign"
        verdict = _certificate_verdict(head, labels, signs, row, np.ones(1), s, "lp", reason)
        return verdict or Verdict(label_tuple, UNDECIDED, reason=reason)
    problem = Problem(head.unit_rows, head.unit_bias / s.box, signs, head.usable)
    if not s.constraint_generation:
        # The paper's approach: one LP over all rows, run to optimality.
        return _decide_by_lp(head, labels, signs, problem, np.flatnonzero(head.usable), s, exact=True)

    positives = labels[head.usable[labels]]
    signed_positive = problem.unit_rows[positives].sum(0)
    if len(positives) == 0:
        signed_positive = -problem.unit_rows[head.usable].sum(0)
    direction = signed_positive / max(np.abs(signed_positive).max(), 1e-300)
    seed_margins = problem.margins(direction)
    add_rows = s.add_rows or max(32, (m + 1) // 2)
    seed_rows = positives

    # Stage 1: a witness with radius >= epsilon in a small subspace settles most argmaxable sets.
    if s.subspace_search and not s.exact_radius:
        extra = np.argsort(seed_margins, kind="stable")[: 2 * len(positives) + 16]
        for _ in range(2):
            basis = _subspace_basis(problem, positives, extra)
            if basis.shape[1] >= m:
                break
            reason = f"LP in a {basis.shape[1]}-dim subspace"
            outcome, verdict = _subspace_witness(
                head, labels, signs, problem, np.r_[positives, extra], basis, add_rows, s, reason
            )
            if verdict is not None:
                return verdict
            seed_rows = np.union1d(seed_rows, outcome.rows)
            binding = outcome.rows[outcome.duals > 0] if len(outcome.duals) == len(outcome.rows) else outcome.rows
            extra = np.union1d(extra, binding)
            if outcome.kind == "nonpositive":
                break

    # Stage 2: exact status without a box, from the min-norm point of the homogenised rows.
    lifted, lifted_norms, scale = _lifted_problem(head, signs)
    count = min(n, m + 1 + len(positives))
    initial = np.union1d(seed_rows, np.argsort(seed_margins, kind="stable")[:count])
    cone = min_norm_point(lifted, np.r_[initial, n])
    cone_witness, cone_lower = None, -np.inf
    if cone.kind == "certificate":
        reason = f"0 is in the convex hull of the signed rows ({cone.rounds} NNLS rounds)"
        verdict = _lifted_certificate(head, labels, signs, cone.rows, cone.weights, lifted_norms, s, reason)
        if verdict is not None:
            return verdict
    elif cone.kind == "witness":
        x = scale * cone.point[:m] / cone.point[m]
        check = check_witness(head.weight, head.bias, signs, x, dtype=s.dtype, box=s.box, norms=head.norms)
        if check:
            inside = np.abs(x).max() <= s.box
            if inside and check.relative_radius >= s.epsilon and not s.exact_radius:
                reason = f"min-norm point of the homogenised rows ({cone.rounds} NNLS rounds)"
                return _witness_verdict(head, labels, signs, x, s, upper=None, exact=False, reason=reason)
            cone_witness = x
            if inside:
                cone_lower = check.relative_radius
                order = np.argsort(problem.margins(x / s.box), kind="stable")
                if s.subspace_search and not s.exact_radius:
                    # Re-centre cheaply: the Chebyshev LP restricted to the witness direction and the
                    # normals of the rows that bind first around it.
                    near = order[: 2 * len(positives) + 64]
                    basis = _subspace_basis(problem, positives, near, extra_vector=x / s.box)
                    if basis.shape[1] < m:
                        reason = f"LP in a {basis.shape[1]}-dim subspace around a min-norm-point witness"
                        rows = np.r_[positives, order[: 2 * basis.shape[1]]]
                        _, verdict = _subspace_witness(head, labels, signs, problem, rows, basis, add_rows, s, reason)
                        if verdict is not None:
                            return verdict
                # Start the boxed LP from the rows that bind first around this interior point.
                initial = np.union1d(positives, order[: m + 1])
    # Stage 3: the Chebyshev LP in the box, for the radius and the epsilon decision.
    return _decide_by_lp(
        head,
        labels,
        signs,
        problem,
        initial,
        s,
        exact=s.exact_radius,
        known_witness=cone_witness,
        known_lower=cone_lower,
    )


def _decide_by_lp(
    head, labels, signs, problem, initial, s: Settings, *, exact: bool, known_witness=None, known_lower=-np.inf
) -> Verdict:
    """Constraint generation on the boxed Chebyshev LP, then witness or certificate.

    ``known_witness`` (with relative radius ``known_lower`` when inside the box) is an input already
    proven to realise the set: the LP then only has to settle the radius and the epsilon decision.
    """
    n, m = head.weight.shape
    label_tuple = tuple(labels.tolist())
    add_rows = s.add_rows or max(32, (m + 1) // 2)
    usable = np.flatnonzero(head.usable)
    if exact and len(usable) <= FULL_LP_ROWS_PER_DIMENSION * (m + 1):
        # Few rows per dimension: constraint generation would add most of them anyway, one solve at a time.
        initial = usable
    full = {"exact": exact, "epsilon": s.epsilon, "time_limit": s.time_limit, "known_lower": known_lower}
    # Budget: as many simplex iterations as the full LP has rows and columns (it was measured to need about half).
    outcome = maximise_radius(problem, initial, add_rows=add_rows, max_iterations=len(usable) + m + 1, **full)
    if outcome.kind == "budget":
        # Constraint generation is costing more than the full LP would: solve that once instead, so that a set
        # never costs much more than the paper's one LP over all rows.
        outcome = maximise_radius(problem, usable, add_rows=add_rows, **full)
    if outcome.kind == "error":
        return Verdict(label_tuple, UNDECIDED, reason=f"LP failed: {outcome.message}")
    if outcome.kind in ("optimal", "early", "bound"):
        use_known = known_witness is not None and (outcome.kind == "bound" or outcome.rho_lower < known_lower)
        return _witness_verdict(
            head,
            labels,
            signs,
            known_witness if use_known else s.box * outcome.u,
            s,
            upper=outcome.rho_upper,
            exact=outcome.kind == "optimal",
            reason=f"Chebyshev LP, {len(outcome.rows)} of {n} rows, {outcome.rounds} solves",
        )
    # Sub-problem optimum <= ZERO_RADIUS: the full optimum is too. Its duals (in x units) may prove that the
    # region misses the box, and may be a certificate that it is empty.
    rows = outcome.rows
    box_weights = outcome.duals / head.norms[rows] if len(outcome.duals) == len(rows) else np.zeros(len(rows))
    box_proof = (rows, box_weights, outcome.rho_upper)
    if known_witness is not None:
        return _beyond_box_lp(head, labels, signs, known_witness, box_proof, s)
    reason = f"Chebyshev LP optimum {outcome.rho_upper:.3g} <= 0 on {len(rows)} of {n} rows"
    for duals in (outcome.duals, None):
        if duals is None:
            duals = polish_certificate(problem, rows, outcome.duals)
        verdict = _certificate_verdict(head, labels, signs, rows, duals / head.norms[rows], s, "lp", reason)
        if verdict is not None:
            return verdict
    return _decide_homogenised(head, labels, signs, rows, box_proof, s)


def _beyond_box_lp(head, labels, signs, x, box_proof: tuple, s: Settings) -> Verdict:
    """Verdict for a witness ``x`` of a set whose boxed Chebyshev LP optimum was ``<= ZERO_RADIUS``.

    ``box_proof`` is ``(rows, y, rho_upper)``: the boxed LP's rows, its duals in x units and its optimum.
    ``outside_box`` is set only when ``x`` lies outside the box *and* the duals prove (:func:`.exact.prove_box_empty`)
    that no input inside the box realises the set; otherwise the region may reach into the box, too thin for the
    LP: the radius is the witness's own (proven) one when ``x`` is inside, else the lower bound 0.
    """
    rows, weights, box_upper = box_proof
    inside = bool(np.abs(x).max() <= s.box)
    missed = not inside and prove_box_empty(head.weight, head.bias, signs, rows, weights, s.box)
    if missed:
        reason = f"region lies outside the box |x|_inf <= {s.box:g} (proven by the boxed LP's duals)"
    elif inside:
        reason = f"boxed Chebyshev LP optimum {box_upper:.3g} <= 0: region thinner than the LP's resolution"
    else:
        reason = (
            f"witness outside the box |x|_inf <= {s.box:g}, boxed LP optimum {box_upper:.3g} <= 0; not proven "
            "that the region misses the box"
        )
    verdict = _witness_verdict(head, labels, signs, x, s, upper=max(box_upper, 0.0), exact=False, reason=reason)
    if verdict.status == ARGMAXABLE and not inside:
        # The witness's distance to the hyperplanes is not a radius inside the box: 0 is the proven bound.
        verdict.radius, verdict.relative_radius = 0.0, 0.0
        verdict.epsilon_argmaxable = False if (missed or box_upper < s.epsilon) else None
        verdict.outside_box = missed
    return verdict


def _decide_homogenised(head: Head, labels, signs, seed_rows, box_proof: tuple, s: Settings) -> Verdict:
    """Exact decision without a box: Chebyshev LP of the cone ``sigma_i (w_i . u + b_i t / tau) > 0, t > 0``.

    Used when the boxed LP has no interior point but its duals are no certificate, i.e. the
    box binds (a region may exist beyond ``|x|_inf <= B``) or the region is thinner than the LP's
    resolution. ``box_proof``: see :func:`_beyond_box_lp`.
    """
    n, m = head.weight.shape
    label_tuple = tuple(labels.tolist())
    lifted, lifted_norms, scale = _lifted_problem(head, signs)
    outcome = maximise_radius(lifted, np.r_[seed_rows, n], exact=False, epsilon=0.0, time_limit=s.time_limit)
    box_upper = box_proof[2]
    if outcome.kind == "error":
        return Verdict(label_tuple, UNDECIDED, reason=f"homogenised LP failed: {outcome.message}")
    if outcome.kind == "nonpositive":
        for duals in (outcome.duals, polish_certificate(lifted, outcome.rows, outcome.duals)):
            verdict = _lifted_certificate(
                head, labels, signs, outcome.rows, duals, lifted_norms, s, "homogenised LP optimum <= 0"
            )
            if verdict is not None:
                return verdict
        return Verdict(
            label_tuple,
            UNDECIDED,
            radius_upper=max(box_upper, 0.0) * s.box,
            reason="LP optimum <= 0 but no Farkas certificate holds in exact arithmetic: the region, if any, is "
            "thinner than the LP's resolution",
        )
    v, t = outcome.u[:m], outcome.u[m]
    return _beyond_box_lp(head, labels, signs, scale * v / t, box_proof, s)


def _decide(head: Head, labels: np.ndarray, rule_says: bool | None, changes: int | None, s: Settings) -> Verdict:
    """One set: the rule's answer (``None`` without ``dft_k``) refined or decided by the LP."""
    label_tuple = tuple(labels.tolist())
    if rule_says is None:
        return _decide_lp(head, labels, s)
    k = head.dft_k
    if rule_says:
        reason = f"{changes} <= 2k = {2 * k} sign changes in circle order (DFT rule)"
        if s.rule_only:
            return Verdict(label_tuple, ARGMAXABLE, method="rule", reason=reason)
        lp = _decide_lp(head, labels, s)
        verdict = Verdict(label_tuple, ARGMAXABLE, method="rule", reason=reason)
        if lp.status == ARGMAXABLE:
            verdict.radius, verdict.radius_upper = lp.radius, lp.radius_upper
            verdict.relative_radius, verdict.radius_exact = lp.relative_radius, lp.radius_exact
            verdict.epsilon_argmaxable, verdict.witness = lp.epsilon_argmaxable, lp.witness
            verdict.witness_exact, verdict.witness_in_dtype = lp.witness_exact, lp.witness_in_dtype
            verdict.reason += f"; {lp.reason}"
        else:
            # The theorem holds for the exact G; no witness passed both checks on the float64 head and the
            # model's dtype (an exact-only witness is kept), so the region is thinner than they resolve.
            verdict.radius, verdict.relative_radius, verdict.epsilon_argmaxable = 0.0, 0.0, False
            verdict.radius_upper = lp.radius_upper
            verdict.witness, verdict.witness_exact, verdict.witness_in_dtype = (
                lp.witness,
                lp.witness_exact,
                lp.witness_in_dtype,
            )
            if lp.status == UNARGMAXABLE:
                note = "the float64 rounding of G has no such region (Farkas certificate in exact arithmetic)"
            else:
                note = f"no witness holds in exact arithmetic and in {s.dtype}"
            verdict.reason += f"; region below the resolution of the float64 head or {s.dtype}: {note} ({lp.reason})"
        return verdict
    signs = signs_from_labels(labels, head.num_labels)
    if head.slack_dims == 0:
        for attempt in range(RULE_CERTIFICATE_ATTEMPTS):
            built = dft_rule_certificate(
                labels,
                head.num_labels,
                k,
                head.label_order,
                weight=head.weight,
                attempt=attempt,
                position_labels=head.position_labels,
            )
            if built is not None:
                rows, y = built
                verdict = _certificate_verdict(
                    head, labels, signs, rows, y, s, "rule", f"{changes} > 2k = {2 * k} sign changes (DFT rule)"
                )
                if verdict is not None:
                    return verdict
    budget = s.rule_rejected_rows
    if head.slack_dims == 0 and budget and head.num_labels > budget:
        verdict = _decide_on_rows(head, labels, rows_around_set(head, labels, budget), s)
    else:
        verdict = _decide_lp(head, labels, s)
    if verdict.status == UNDECIDED:
        # The rule's "no" is a theorem about the exact G; the stored (rounded) G can differ where neighbouring rows
        # lie 2 pi / n apart, so without an exact certificate the verdict stays undecided, with the rule's view.
        verdict.reason = (
            f"{changes} > 2k = {2 * k} sign changes: unargmaxable for the exact G (DFT rule), not proven for the "
            f"stored head; {verdict.reason}"
        )
    return verdict


def rows_around_set(head: Head, labels: np.ndarray, budget: int) -> np.ndarray:
    """At most ``budget`` sorted row ids: the set's labels, their nearest circle neighbours, an even spread of the rest.

    A set the DFT rule rejects fails, for the exact ``G``, on ``2k + 2`` rows alternating in and out of the set along
    the circle; for the rounded ``G`` a certificate, if one exists, lies on rows near the set's runs. Half the budget
    goes to the ``w`` circle neighbours on each side of every label (``w`` as large as the budget allows), the rest to
    rows evenly spaced around the circle.

    Args:
        head: a DFT head (``dft_k`` set); ``label_order`` gives circle positions (identity when ``None``).
        labels: ``(s,)`` sorted label ids of the set.
        budget: how many rows to aim for.

    Returns:
        int64 array of shape ``(<= max(budget, 3 s),)``, sorted, holding every label of the set and its two
        neighbours.
    """
    n = head.num_labels
    order = head.label_order
    positions = labels if order is None else order[labels]
    reach = max(1, (budget // 2 // max(len(labels), 1) - 1) // 2)
    near = np.unique((positions[:, None] + np.arange(-reach, reach + 1)[None, :]) % n)
    spread = np.linspace(0, n, num=max(budget - len(near), 0), endpoint=False).astype(np.int64)
    around = np.union1d(near, spread)
    return np.sort(around if order is None else head.position_labels[around])


def _decide_on_rows(head: Head, labels: np.ndarray, rows: np.ndarray, s: Settings) -> Verdict:
    """Decide a set of a pure DFT head the rule rejects from the LP over ``rows`` only, a fixed cost at any ``n``.

    A Farkas certificate on a subset of the rows is one for the whole head (the certificate's rows map back); a
    witness of the subset is kept only if its signs hold on every row (checked once, ``O(n m)``); anything else
    stays undecided. ``rows``: sorted ids holding ``labels``.
    """
    sub = Head(
        head.weight[rows],
        head.bias[rows],
        head.norms[rows],
        head.unit_rows[rows],
        head.unit_bias[rows],
        head.usable[rows],
    )
    local = _decide_lp(sub, np.searchsorted(rows, labels), s)
    scope = f"LP over {len(rows):,} of {head.num_labels:,} rows (the set's circle neighbours and an even spread)"
    label_tuple = tuple(labels.tolist())
    if local.status == UNARGMAXABLE:
        local.labels, local.certificate_rows = label_tuple, rows[local.certificate_rows]
        local.reason = f"{scope}: {local.reason}"
        return local
    if local.status == ARGMAXABLE:
        signs = signs_from_labels(labels, head.num_labels)
        return _witness_verdict(head, labels, signs, local.witness, s, upper=None, exact=False, reason=scope)
    return Verdict(label_tuple, UNDECIDED, reason=f"{scope}: {local.reason}")


_WORKER_STATE: dict = {}


def _single_blas_thread():
    """Context limiting BLAS to one thread (threadpoolctl, shipped with scikit-learn), or a no-op."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(1)


def _init_worker(head: Head, settings: Settings) -> None:
    _WORKER_STATE["head"] = head
    _WORKER_STATE["settings"] = settings
    # One BLAS thread per process: the parallelism is over label sets.
    _WORKER_STATE["limits"] = _single_blas_thread()
    _WORKER_STATE["limits"].__enter__()


def _timed_decide(head: Head, labels, rule_says, changes, settings: Settings) -> Verdict:
    wall, cpu = time.perf_counter(), time.process_time()
    verdict = _decide(head, labels, rule_says, changes, settings)
    verdict.seconds, verdict.cpu_seconds = time.perf_counter() - wall, time.process_time() - cpu
    return verdict


def _run_chunk(tasks: list[tuple[int, np.ndarray, bool | None, int | None]]) -> list[tuple[int, Verdict]]:
    head, settings = _WORKER_STATE["head"], _WORKER_STATE["settings"]
    return [(i, _timed_decide(head, labels, says, changes, settings)) for i, labels, says, changes in tasks]


def verify_label_sets(
    weight,
    bias,
    label_sets,
    *,
    dft_k: int | None = None,
    label_order=None,
    multi_hot: bool = False,
    epsilon: float = DEFAULT_EPSILON,
    box: float = DEFAULT_BOX,
    dtype="float32",
    exact_radius: bool = False,
    rule_only: bool = True,
    constraint_generation: bool = True,
    subspace_search: bool = True,
    certificate_tol: float = CERTIFICATE_TOLERANCE,
    time_limit: float | None = None,
    n_jobs: int = 1,
    progress: bool = True,
    dft_atol: float = 0.0,
    rule_rejected_rows: int | None = RULE_REJECTED_ROWS,
) -> VerificationResult:
    """Decide, for every label set, whether the head can output exactly that set.

    Args:
        weight: ``(n, m)`` effective matrix in the head's own input space (DFT head: ``[G | S]``;
            bottleneck head: the ``r``-dim middle layer's output matrix). numpy or tensor.
        bias: ``(n,)`` or ``None``.
        label_sets: label-id lists (empty lists allowed), multi-hot rows ``(num_sets, n)`` with
            ``multi_hot=True``, or a :class:`.label_sets.LabelSets`.
        dft_k: the first ``2k + 1`` columns of ``weight`` are ``G(n, k)`` (checked bit for bit against the
            float64 :func:`hf_dft_head.gale.gale_matrix`; the maximum deviation is reported as
            ``dft_max_abs_error``): use the sign-change rule, a theorem about the exact ``G``.
        label_order: ``(n,)`` circle position of each label, for the rule.
        multi_hot: ``label_sets`` are multi-hot rows.
        epsilon: threshold on the relative radius ``r / box`` for ``epsilon_argmaxable``
            (default 1e-6; see :mod:`.lp` for why, and for the solver tolerances below it).
        box: ``B``, half-width of the box holding the Chebyshev centre (default 1e4).
        dtype: the model's dtype; a witness's signs must hold in exact arithmetic over the float64 head
            and with the logits computed in this dtype.
        exact_radius: run the LP to optimality for every set; otherwise stop as soon as the
            status and the epsilon decision are settled (``radius`` is then a proven lower bound).
        rule_only: for DFT heads, accept the rule's "yes" (a theorem about the exact ``G``) without an LP
            (no radius, no witness); ``False`` adds an LP witness checked on the float64 head and in ``dtype``.
        constraint_generation: ``False`` solves one LP over all ``n`` rows per set (the paper's
            approach, for comparison).
        subspace_search: try the cheap subspace witness search first.
        certificate_tol: kept for compatibility; verdicts no longer depend on it (certificates are proven
            in exact arithmetic). It is the residual screen of :func:`.lp.check_farkas_certificate`.
        time_limit: HiGHS seconds per LP solve (``None``: no limit); a hit gives "undecided".
        n_jobs: worker processes (``-1``: all cores); results do not depend on it.
        progress: show a tqdm progress bar.
        dft_atol: deviation from ``G`` accepted under ``dft_k`` for a head that is not ``G`` bit for bit
            (e.g. float32-rounded); such a head is decided by the LP alone. Default 0: refused.
        rule_rejected_rows: pure DFT heads with more labels than this: a set the rule rejects whose ``2k + 2``-row
            certificate fails for the stored ``G`` goes to an LP over this many rows around it
            (:func:`rows_around_set`) instead of all ``n``; its "unargmaxable" is still proven for the whole head,
            and what it cannot prove stays undecided. ``None`` or 0: all rows.

    Returns:
        :class:`VerificationResult`, one :class:`Verdict` per set in input order.
    """
    head = prepare_head(weight, bias, dft_k=dft_k, label_order=label_order, dft_atol=dft_atol)
    sets = as_label_sets(label_sets, head.num_labels, multi_hot=multi_hot)
    if not (epsilon >= 0 and box > 0):
        raise ValueError(f"need epsilon >= 0 and box > 0, got epsilon={epsilon}, box={box}.")
    if rule_rejected_rows is not None and rule_rejected_rows < 0:
        raise ValueError(f"rule_rejected_rows must be >= 0 (0 or None: all rows), got {rule_rejected_rows}.")
    settings = Settings(
        box=float(box),
        epsilon=float(epsilon),
        dtype=normalise_dtype_name(dtype),
        exact_radius=exact_radius,
        rule_only=rule_only,
        constraint_generation=constraint_generation,
        subspace_search=subspace_search,
        certificate_tol=float(certificate_tol),
        time_limit=time_limit,
        rule_rejected_rows=rule_rejected_rows or None,
    )
    verdicts: list[Verdict | None] = [None] * len(sets)
    tasks: list[tuple[int, np.ndarray, bool | None, int | None]] = []
    if head.dft_rule:
        changes = count_sign_changes(sets.indptr, circle_positions(sets, head.label_order), head.num_labels)
        says = changes <= 2 * head.dft_k
        for i in range(len(sets)):
            if says[i] and rule_only:
                verdicts[i] = Verdict(
                    tuple(sets[i].tolist()),
                    ARGMAXABLE,
                    method="rule",
                    reason=f"{changes[i]} <= 2k = {2 * head.dft_k} sign changes in circle order (DFT rule)",
                )
            else:
                tasks.append((i, sets[i], bool(says[i]), int(changes[i])))
    else:
        tasks = [(i, sets[i], None, None) for i in range(len(sets))]

    jobs = (os.cpu_count() or 1) if n_jobs == -1 else max(1, int(n_jobs))
    bar = tqdm(total=len(tasks), disable=not progress or not tasks, desc="argmaxability", unit="set")
    if jobs == 1 or len(tasks) <= 1:
        with _single_blas_thread():  # as in the workers, so that results do not depend on n_jobs
            for i, labels, rule_says, count in tasks:
                verdicts[i] = _timed_decide(head, labels, rule_says, count, settings)
                bar.update(1)
    else:
        chunk = max(1, min(8, len(tasks) // (4 * jobs)))
        chunks = [tasks[j : j + chunk] for j in range(0, len(tasks), chunk)]
        with ProcessPoolExecutor(max_workers=jobs, initializer=_init_worker, initargs=(head, settings)) as pool:
            futures = [pool.submit(_run_chunk, c) for c in chunks]
            for future in as_completed(futures):
                done = future.result()
                for i, verdict in done:
                    verdicts[i] = verdict
                bar.update(len(done))
    bar.close()
    return VerificationResult(
        verdicts=verdicts,
        num_labels=head.num_labels,
        dim=head.dim,
        dft_k=head.dft_k,
        slack_dims=head.slack_dims,
        dft_max_abs_error=head.dft_max_abs_error,
        settings=settings,
        dft_rule=head.dft_rule,
    )


def verify_signs(weight, bias, signs, **kwargs) -> Verdict:
    """Decide one sign pattern ``signs`` (``(n,)`` of +1/-1) with :func:`verify_label_sets` options."""
    signs = np.asarray(signs)
    if signs.ndim != 1 or not np.all(np.isin(signs, (-1, 1))):
        raise ValueError("signs must be a 1-D array of +1 (label on) and -1 (label off).")
    kwargs.setdefault("progress", False)
    return verify_label_sets(weight, bias, [np.flatnonzero(signs > 0)], **kwargs)[0]
