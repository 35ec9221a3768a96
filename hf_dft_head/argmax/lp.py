"""The Chebyshev-radius LP with constraint generation, witnesses and Farkas certificates.

Notation. A head maps its input ``x`` (m,) to logits ``z = W x + b``
with ``W`` (n, m). A sign pattern ``sigma`` in ``{+1, -1}^n`` (+1 on the label set) is
*argmaxable* iff some ``x`` has ``sigma_i (w_i . x + b_i) > 0`` for every row ``i``.

The LP, in the units used here: with unit rows ``a_i = sigma_i w_i / ||w_i||``, offsets
``c_i = sigma_i b_i / (||w_i|| B)`` and the scaled input ``u = x / B``::

    maximise rho  s.t.  a_i . u + c_i >= rho  (all rows i),   |u|_inf <= 1,   rho <= rho_max

``rho*`` is the *relative* Chebyshev radius: the largest ball (radius ``rho* B`` in x units)
inside the region whose centre lies in the box ``|x|_inf <= B``. Unit rows and a unit box
keep the LP well scaled whatever the size of ``W`` and ``B``.

Constraint generation: solve on a few rows, compute the margins ``a_i . u + c_i`` of all n
rows at the sub-solution (one mat-vec), add the most violated rows, repeat. The optimum
``rho_sub`` of a sub-problem is an upper bound on ``rho*`` (fewer constraints), the smallest
margin at its point ``u`` is a lower bound (``u`` is a feasible centre for that radius),
so verdicts and epsilon decisions can stop early without losing exactness.

Farkas certificate (derivation). Write ``A`` for the rows ``sigma_i w_i`` and ``c`` for
``sigma_i b_i``. Suppose ``y >= 0``, ``y != 0`` with ``A^T y = 0`` and ``c^T y <= 0``. If some
``x`` had ``A x + c > 0`` (every entry), then ``y^T (A x + c) > 0`` because ``y`` is non-negative
and not zero; but ``y^T (A x + c) = (A^T y) . x + c^T y = c^T y <= 0``: a contradiction. So no
``x`` at all (no box) realises the pattern. Conversely (Gordan's theorem on the homogenised
system ``[A c; 0 1] (x, t) > 0``) such a ``y`` exists whenever the pattern is unrealisable, and
the dual of the LP above yields it when ``rho* <= 0`` and the box is not binding.

In floating point ``A^T y`` is only nearly zero. With ``y`` scaled so that
``sum_i y_i ||w_i|| = 1``, for every ``x``::

    min_i sigma_i (w_i . x + b_i) / ||w_i||  <=  sum_i y_i sigma_i (w_i . x + b_i)
                                             =  (A^T y) . x + c^T y  <=  ||A^T y||_2 ||x||_2 + c^T y

(the left side, maximised over the box, is the Chebyshev radius), so a float ``y`` alone proves only a
bound. :func:`check_farkas_certificate` therefore screens ``y`` (relative residual ``||A^T y||_2 <= tol``,
``tol = 1e-12``) and then proves, in exact arithmetic over the float64 values of ``W`` and ``b``, that the
support of ``y`` carries an exact certificate (:func:`.exact.prove_farkas`: an exact rational solve, or a
verified float64 solve with rigorous error bounds). A region that is merely tiny is therefore never called
"unargmaxable": its support has no exact certificate, and the set ends "undecided" when no witness
survives the checks. Witnesses are checked the same way (:func:`check_witness`): exact signs over the
float64 values, then the signs of the logits computed in the model's dtype, for every order of summation
(:func:`dtype_robust_signs`). LP duals carry the solver's tolerance (~1e-10) and are polished by
non-negative least squares on their support before the check.

Tolerances: HiGHS runs with primal and dual feasibility tolerances of 1e-10 (its minimum),
four orders below the default epsilon, because
regions can be tiny (about ``n^-2`` per isolated label in a pure DFT layer).
"""

from __future__ import annotations

from dataclasses import dataclass

import highspy
import numpy as np
from scipy.optimize import nnls

from .exact import gamma, prove_farkas, witness_signs

#: Default half-width ``B`` of the box ``|x|_inf <= B`` that holds the Chebyshev centre. The
#: paper used 1e4; the radius is reported both in x units and relative to ``B``.
DEFAULT_BOX = 1e4
#: Default threshold on the *relative* radius ``r / B`` for "epsilon-argmaxable". At 1e-6 a
#: ball around the centre survives float32 rounding of the logits (unit roundoff 6e-8) for
#: centres of norm up to about 16 B.
DEFAULT_EPSILON = 1e-6
#: Cap ``rho_max`` on the relative radius; it keeps sub-problems with few rows bounded.
RADIUS_CAP = 1.0
#: HiGHS primal and dual feasibility tolerance (its minimum allowed value).
SOLVER_TOLERANCE = 1e-10
#: Relative rounding tolerance of a Farkas certificate's residual and offset (module docstring).
CERTIFICATE_TOLERANCE = 1e-12
#: A sub-problem optimum at or below this relative radius sends the set to the certificate path.
ZERO_RADIUS = 1e-10
#: A row counts as violated when its margin is below the sub-problem optimum by more than this.
GENERATION_TOLERANCE = 1e-9
#: Simplex iterations allowed to a hot-started solve, per row and column of the LP, before it is restarted
#: from scratch. A hot start normally needs well under half of that; on degenerate optima (a radius at the
#: cap) HiGHS's dual simplex was seen to stall for minutes after rows were added, while a fresh solve of
#: the same LP took 0.1 s.
HOT_START_ITERATIONS_PER_ROW = 1.0
#: Simplex iterations allowed to a solve from scratch: this many per row and column of the LP, plus
#: ``SCRATCH_ITERATIONS_BASE``. The dual simplex was measured at about 0.5 per row and column on a trained dense head;
#: the cap only turns a pathological solve (cycling, stalling) into an "undecided" verdict instead of a hang.
SCRATCH_ITERATIONS_PER_ROW = 20.0
SCRATCH_ITERATIONS_BASE = 1000


@dataclass
class FarkasCheck:
    """Outcome of :func:`check_farkas_certificate`; truthy iff ``valid``.

    Attributes:
        valid: the certificate proves the claim (see the module docstring).
        residual: ``||sum_i y_i sigma_i w_i||_2`` with ``y`` scaled so that ``sum_i y_i ||w_i|| = 1``.
        offset: ``sum_i y_i sigma_i b_i`` with the same scaling.
        radius_bound: upper bound on the relative Chebyshev radius inside the box implied by ``y`` (float).
        reason: why it failed, or what it proves.
        exact: the claim was proven in exact arithmetic over the float64 head (see :mod:`.exact`).
        method: how: ``"exact rational solve"``, ``"verified float64 solve"``, ``"zero row"``, or ``""``.
    """

    valid: bool
    residual: float
    offset: float
    radius_bound: float
    reason: str
    exact: bool = False
    method: str = ""

    def __bool__(self) -> bool:
        return self.valid


def check_farkas_certificate(
    weight: np.ndarray,
    bias: np.ndarray | None,
    signs: np.ndarray,
    y: np.ndarray,
    tol: float = CERTIFICATE_TOLERANCE,
    *,
    rows: np.ndarray | None = None,
    box: float = DEFAULT_BOX,
    exact: bool = True,
) -> FarkasCheck:
    """Check a Farkas certificate that the sign pattern ``signs`` is not argmaxable.

    The claim: ``y >= 0``, ``y != 0``, ``sum_i y_i sigma_i w_i = 0`` and ``sum_i y_i sigma_i b_i <= 0``,
    which rules out any ``x`` (no box) with ``sigma_i (w_i . x + b_i) > 0`` for all ``i`` (proof in
    the module docstring). With ``y`` scaled to ``sum_i y_i ||w_i|| = 1``, ``y`` must have a relative
    residual ``||sum_i y_i sigma_i w_i||_2 <= tol`` (it approximates a certificate), and with ``exact``
    (default) the claim is then proven in exact arithmetic over the float64 values of ``weight`` and
    ``bias``: the support of ``y`` carries an exact certificate (:func:`.exact.prove_farkas`).
    ``exact=False`` is the float check alone (offset ``<= tol * sum_i y_i |b_i|``): rounding-level
    evidence, not a proof.

    Args:
        weight: ``(n, m)`` head matrix.
        bias: ``(n,)`` or ``None`` (zero).
        signs: ``(n,)`` entries +1 (in the set) / -1 (not in the set).
        y: certificate weights, ``(n,)``, or ``(len(rows),)`` when ``rows`` is given.
        tol: relative residual screen (default 1e-12).
        rows: optional int array of the row ids that ``y`` refers to.
        box: ``B``, only for the reported ``radius_bound``.
        exact: prove the claim in exact arithmetic (default) rather than up to rounding.

    Returns:
        :class:`FarkasCheck` (truthy iff valid), with the bound ``residual * sqrt(m) + offset / box``
        on the relative Chebyshev radius inside the box that ``y`` implies.
    """
    weight = np.asarray(weight, dtype=np.float64)
    n, m = weight.shape
    bias = np.zeros(n) if bias is None else np.asarray(bias, dtype=np.float64)
    signs = np.asarray(signs, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64).ravel()
    rows = np.arange(n) if rows is None else np.asarray(rows, dtype=np.int64)
    if y.shape != rows.shape:
        return FarkasCheck(False, np.inf, np.inf, np.inf, f"y has shape {y.shape}, rows {rows.shape}")
    if not np.all(np.isfinite(y)) or np.any(y < 0) or not np.any(y > 0):
        return FarkasCheck(False, np.inf, np.inf, np.inf, "y must be finite, non-negative and not zero")
    w_rows = weight[rows] * signs[rows, None]
    b_rows = bias[rows] * signs[rows]
    norms = np.linalg.norm(weight[rows], axis=1)
    scale = float(y @ norms)
    if scale == 0.0:
        # Only zero rows carry weight: the claim is sigma_i b_i <= 0 on one of them (exact comparisons).
        offset = float(y @ b_rows)
        wrong = bool(np.any((y > 0) & (b_rows <= 0)))
        ok = wrong if exact else offset <= 0
        reason = "a zero row of weight with a bias of the wrong sign" if ok else "zero rows with the right sign"
        return FarkasCheck(ok, 0.0, offset, -np.inf if ok else np.inf, reason, exact=ok and exact, method="zero row")
    y_scaled = y / scale
    residual = float(np.linalg.norm(y_scaled @ w_rows))
    offset = float(y_scaled @ b_rows)
    bound = residual * np.sqrt(m) + offset / box
    if residual > tol:
        return FarkasCheck(
            False,
            residual,
            offset,
            bound,
            f"residual {residual:.2g} above rounding level (tol {tol:g}); it proves only a relative radius "
            f"<= {bound:.3g}",
        )
    if not exact:
        offset_slack = tol * float(y_scaled @ np.abs(b_rows))
        ok = offset <= offset_slack
        reason = f"residual {residual:.2g}, offset {offset:.3g}" + ("" if ok else " above rounding level")
        return FarkasCheck(ok, residual, offset, bound, reason)
    proof = prove_farkas(weight, bias, signs, rows, y)
    if not proof.valid:
        return FarkasCheck(
            False, residual, offset, bound, f"no exact certificate on the support of y: {proof.reason}", method=""
        )
    return FarkasCheck(True, residual, offset, bound, proof.reason, exact=True, method=proof.method)


def round_to_dtype(values: np.ndarray, dtype) -> np.ndarray:
    """``values`` rounded to ``dtype`` (round to nearest even), returned as float64 holding those exact values.

    float64 is returned as is; bfloat16 is emulated by rounding float32 bit patterns to 8 mantissa bits.
    """
    name = normalise_dtype_name(dtype)
    values = np.asarray(values, dtype=np.float64)
    if name == "float64":
        return values
    if name in ("float32", "float16"):
        return values.astype(name).astype(np.float64)
    bits = values.astype(np.float32).view(np.uint32)
    rounded = (bits + np.uint32(0x7FFF) + ((bits >> 16) & np.uint32(1))) & np.uint32(0xFFFF0000)
    return rounded.view(np.float32).astype(np.float64)


def dtype_logits(weight: np.ndarray, bias: np.ndarray, x: np.ndarray, dtype) -> np.ndarray:
    """Logits ``W x + b`` evaluated in ``dtype`` (float64, float32, float16 or bfloat16), in numpy's order.

    float64/float32 use numpy's matmul in that dtype. float16 and bfloat16 round the inputs
    to the dtype, accumulate in float32 (as GPU kernels do) and round the result.

    Returns:
        float64 array ``(n,)`` holding the values computed in ``dtype``.
    """
    name = normalise_dtype_name(dtype)
    if name == "float64":
        return weight @ x + bias
    if name == "float32":
        return (weight.astype(np.float32) @ x.astype(np.float32) + bias.astype(np.float32)).astype(np.float64)
    low = [round_to_dtype(a, name).astype(np.float32) for a in (weight, x, bias)]
    return round_to_dtype((low[0] @ low[1] + low[2]).astype(np.float64), name)


#: Per dtype: unit roundoff of the accumulation (float32 for the 16-bit types, as GPU kernels accumulate) and the
#: magnitude at or below which the final rounding to the dtype may give 0 (half its smallest subnormal).
DTYPE_ACCUMULATION = {
    "float64": (2.0**-53, 0.0),
    "float32": (2.0**-24, 0.0),
    "float16": (2.0**-24, 2.0**-25),
    "bfloat16": (2.0**-24, 2.0**-134),
}


def dtype_robust_signs(weight: np.ndarray, bias: np.ndarray, signs: np.ndarray, x: np.ndarray, dtype) -> np.ndarray:
    """Rows whose signed logit is ``> 0`` for *every* evaluation in ``dtype``: inputs rounded to the dtype, products
    and sums in its accumulation precision (:data:`DTYPE_ACCUMULATION`) in any order, with or without FMA, result
    rounded to the dtype.

    Such an evaluation is within ``gamma_{m+1}(u) (|W_d| |x_d| + |b_d|)`` of the exact value at the rounded inputs
    (Higham, *Accuracy and Stability of Numerical Algorithms*, section 3.1); the exact value is bounded here in
    float64 (products of 24-bit mantissas are exact, the float64 sum's own error is added). Sufficient, not
    necessary: a row can hold in every order yet fail this bound.

    Returns:
        bool array ``(n,)``.
    """
    name = normalise_dtype_name(dtype)
    unit, zero_below = DTYPE_ACCUMULATION[name]
    m = weight.shape[1]
    w_d, x_d, b_d = (round_to_dtype(a, name) for a in (weight, x, bias))
    with np.errstate(over="ignore", invalid="ignore"):
        values = w_d @ x_d + b_d
        magnitude = (np.abs(w_d) @ np.abs(x_d) + np.abs(b_d)) * (1.0 + 4.0 * gamma(m + 3))
        slack = 2.0 * (gamma_unit(m + 1, unit) + gamma(m + 1)) * magnitude + (m + 2) * 2.0**-149 + zero_below
        robust = signs * values > slack
    return robust & np.isfinite(values) & np.isfinite(slack)


def gamma_unit(k: int, unit: float) -> float:
    """``gamma_k = k u / (1 - k u)`` for the unit roundoff ``u`` of the accumulation."""
    return k * unit / (1.0 - k * unit)


def normalise_dtype_name(dtype) -> str:
    """Map a dtype given as numpy dtype, string or torch dtype (``torch.float32``) to its name."""
    name = str(dtype).replace("torch.", "")
    aliases = {"float": "float32", "double": "float64", "half": "float16", "bf16": "bfloat16"}
    name = aliases.get(name, name)
    if name not in ("float64", "float32", "float16", "bfloat16"):
        try:
            name = np.dtype(dtype).name
        except TypeError:
            pass
    if name not in ("float64", "float32", "float16", "bfloat16"):
        raise ValueError(f"dtype must be float64, float32, float16 or bfloat16 (the model's dtype), got {dtype!r}.")
    return name


@dataclass
class WitnessCheck:
    """Outcome of :func:`check_witness`; truthy iff the signs hold in exact arithmetic and in ``dtype``.

    Attributes:
        valid: ``exact and in_dtype``.
        min_margin: smallest signed logit ``sigma_i (w_i . x + b_i)`` as computed in float64.
        relative_radius: proven lower bound on ``min_i sigma_i (w_i . x + b_i) / ||w_i||`` (exact arithmetic)
            divided by ``box``; 0 when only the signs are proven, negative when the signs fail.
        reason: what failed, or what holds.
        exact: every signed logit is ``> 0`` in exact arithmetic over the float64 values.
        in_dtype: every signed logit is ``> 0`` when the logits are computed in ``dtype``.
    """

    valid: bool
    min_margin: float
    relative_radius: float
    reason: str
    exact: bool = False
    in_dtype: bool = False

    def __bool__(self) -> bool:
        return self.valid


def check_witness(
    weight: np.ndarray,
    bias: np.ndarray | None,
    signs: np.ndarray,
    x: np.ndarray,
    *,
    dtype="float32",
    box: float = DEFAULT_BOX,
    norms: np.ndarray | None = None,
) -> WitnessCheck:
    """Check that ``x`` realises ``signs``: ``sigma_i (w_i . x + b_i) > 0`` in exact arithmetic and in ``dtype``.

    The exact check treats the float64 values of ``weight``, ``bias`` and ``x`` as rationals (float filter
    with rigorous error bounds, exact integer sums where the filter cannot decide: :func:`.exact.witness_signs`);
    the dtype check evaluates the logits as the model does (:func:`dtype_logits`).

    Args:
        weight: ``(n, m)``; bias: ``(n,)`` or ``None``; signs: ``(n,)`` of +1/-1; x: ``(m,)``.
        dtype: the model's dtype for the second check.
        box: ``B``, to express the radius relative to the box.
        norms: optional precomputed row norms of ``weight``.

    Returns:
        :class:`WitnessCheck` with the smallest signed logit and a proven lower bound on the radius of the
        largest ball around ``x`` inside the region, relative to ``box``.
    """
    weight = np.asarray(weight, dtype=np.float64)
    bias = np.zeros(len(weight)) if bias is None else np.asarray(bias, dtype=np.float64)
    signs = np.asarray(signs, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    m = weight.shape[1]
    proof = witness_signs(weight, bias, signs, x)
    signed = signs * proof.logits
    norms = np.linalg.norm(weight, axis=1) if norms is None else norms
    # Upper bound on the exact norms (np.linalg.norm is accurate to a few ulps; 2 gamma_{m+2} is ample).
    norm_upper = norms * (1.0 + 2.0 * (m + 2) * 2.0**-53 / (1.0 - (m + 2) * 2.0**-53))
    with np.errstate(divide="ignore", invalid="ignore"):
        distance = np.where(norms > 0, proof.lower / np.where(norms > 0, norm_upper, 1.0), np.inf)
    min_margin = float(np.nan_to_num(signed, nan=-np.inf).min())
    if not proof.holds:
        bad = proof.bad_row
        float_note = "" if signed[bad] <= 0 else f" (its float64 value {signed[bad]:.3g} is positive: rounding)"
        return WitnessCheck(False, min_margin, -np.inf, f"row {bad} has the wrong sign in exact arithmetic{float_note}")
    relative = float(distance.min()) * (1.0 - 2.0**-52) / box
    name = normalise_dtype_name(dtype)
    # Every evaluation order passing implies numpy's does; numpy's own logits only word a failure.
    robust = dtype_robust_signs(weight, bias, signs, x, name)
    if not np.all(robust):
        low = signed if name == "float64" else signs * dtype_logits(weight, bias, x, dtype)
        bad = int(np.argmin(np.nan_to_num(low, nan=-np.inf))) if not np.all(low > 0) else int(np.argmin(robust))
        how = "has the wrong sign" if low[bad] <= 0 else "is within the rounding error of some evaluation order"
        return WitnessCheck(
            False,
            min_margin,
            relative,
            f"signs hold in exact arithmetic, but row {bad} {how} with the logits computed in {name}",
            exact=True,
        )
    return WitnessCheck(
        True,
        min_margin,
        relative,
        f"signs hold in exact arithmetic and in {name} for every order of summation",
        exact=True,
        in_dtype=True,
    )


class _RowLP:
    """HiGHS model ``max rho s.t. M v - rho >= lower`` with bounds on ``v``; rows are added over time."""

    def __init__(self, num_vars: int, var_bound: float, time_limit: float | None):
        self.num_vars = num_vars
        self.highs = highspy.Highs()
        options = {
            "output_flag": False,
            "presolve": "off",  # dense rows: presolve finds nothing and costs a pass
            "threads": 1,  # parallelism is over label sets (processes)
            "primal_feasibility_tolerance": SOLVER_TOLERANCE,
            "dual_feasibility_tolerance": SOLVER_TOLERANCE,
            "random_seed": 0,
        }
        self.time_limit = time_limit
        for key, value in options.items():
            self.highs.setOptionValue(key, value)
        inf = highspy.kHighsInf
        lp = highspy.HighsLp()
        lp.num_col_ = num_vars + 1
        lp.num_row_ = 0
        lp.col_cost_ = np.r_[np.zeros(num_vars), -1.0]
        lp.col_lower_ = np.r_[np.full(num_vars, -var_bound), -inf]
        lp.col_upper_ = np.r_[np.full(num_vars, var_bound), RADIUS_CAP]
        lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
        lp.a_matrix_.start_ = np.zeros(num_vars + 2, dtype=np.int32)
        lp.a_matrix_.num_col_ = num_vars + 1
        lp.a_matrix_.num_row_ = 0
        self.highs.passModel(lp)
        self.solved = False
        self.iterations = 0  # simplex iterations of every run so far

    def add_rows(self, coefficients: np.ndarray, lower: np.ndarray) -> None:
        """Add rows ``coefficients @ v - rho >= lower``; coefficients ``(k, num_vars)``."""
        k = len(lower)
        width = self.num_vars + 1
        values = np.empty((k, width))
        values[:, :-1] = coefficients
        values[:, -1] = -1.0
        self.highs.addRows(
            k,
            np.ascontiguousarray(lower, dtype=np.float64),
            np.full(k, highspy.kHighsInf),
            k * width,
            np.arange(0, k * width, width, dtype=np.int32),
            np.tile(np.arange(width, dtype=np.int32), k),
            values.ravel(),
        )

    def stop_below(self, rho_bound: float) -> None:
        """Let the dual simplex stop once it proves the optimum ``rho`` is at most ``rho_bound``.

        HiGHS's ``objective_bound``: the dual simplex objective (a valid bound at every dual
        feasible iterate) of ``min -rho`` reaching ``-rho_bound`` ends the solve.
        """
        self.highs.setOptionValue("objective_bound", -float(rho_bound))

    def _run(self, iteration_limit: int) -> highspy.HighsModelStatus:
        """One HiGHS run capped at ``iteration_limit`` simplex iterations; adds them to ``self.iterations``."""
        self.highs.setOptionValue("simplex_iteration_limit", int(iteration_limit))
        self.highs.run()
        self.iterations += int(self.highs.getInfo().simplex_iteration_count)
        return self.highs.getModelStatus()

    def solve(self) -> tuple[str | None, np.ndarray, float, np.ndarray]:
        """Run HiGHS. Returns ``(error or "bound" or None, v, rho, row duals >= 0)``.

        A hot-started solve (rows added since the last one) gets ``HOT_START_ITERATIONS_PER_ROW`` simplex
        iterations per row and column; if it runs out, the basis is dropped and the LP solved from scratch. A solve
        from scratch gets ``SCRATCH_ITERATIONS_PER_ROW`` per row and column (plus ``SCRATCH_ITERATIONS_BASE``); running
        out of those is an error, so no solve runs without an iteration bound (and ``time_limit`` bounds its time).
        """
        if self.time_limit is not None:
            # HiGHS's time_limit counts the model's whole run time; this makes it a limit per solve.
            self.highs.setOptionValue("time_limit", self.highs.getRunTime() + float(self.time_limit))
        size = self.highs.getNumRow() + self.num_vars + 1
        scratch_limit = SCRATCH_ITERATIONS_BASE + SCRATCH_ITERATIONS_PER_ROW * size
        if self.solved:
            status = self._run(100 + HOT_START_ITERATIONS_PER_ROW * size)
            if status == highspy.HighsModelStatus.kIterationLimit:
                self.highs.clearSolver()
                status = self._run(scratch_limit)
        else:
            status = self._run(scratch_limit)
        self.solved = True
        if status == highspy.HighsModelStatus.kObjectiveBound:
            return "bound", np.zeros(0), np.nan, np.zeros(0)
        if status != highspy.HighsModelStatus.kOptimal:
            return f"HiGHS: {self.highs.modelStatusToString(status)}", np.zeros(0), np.nan, np.zeros(0)
        solution = self.highs.getSolution()
        values = np.asarray(solution.col_value)
        # For a minimisation HiGHS reports non-negative duals on rows at their lower bound;
        # tiny negative values are round-off on non-binding rows.
        duals = np.maximum(np.asarray(solution.row_dual), 0.0)
        return None, values[:-1], float(values[-1]), duals


@dataclass
class Problem:
    """A sign pattern of a head in LP units (see the module docstring).

    Attributes:
        unit_rows: ``(n, m)`` rows ``w_i / ||w_i||`` (unsigned; zero rows stay zero).
        offsets: ``(n,)`` ``b_i / (||w_i|| B)`` (unsigned).
        signs: ``(n,)`` +1/-1.
        usable: ``(n,)`` bool, rows with non-zero norm (the others are constant logits).
    """

    unit_rows: np.ndarray
    offsets: np.ndarray
    signs: np.ndarray
    usable: np.ndarray

    def margins(self, u: np.ndarray) -> np.ndarray:
        """``a_i . u + c_i`` for every row; ``+inf`` on unusable rows. Shape ``(n,)``."""
        values = self.signs * (self.unit_rows @ u + self.offsets)
        values[~self.usable] = np.inf
        return values


@dataclass
class LPOutcome:
    """Result of :func:`maximise_radius`.

    Attributes:
        kind: ``"optimal"`` (no violated row: ``rho`` is the full optimum), ``"early"`` (stopped
            with the epsilon decision settled), ``"bound"`` (the dual simplex proved
            ``rho_upper < epsilon``; no point returned), ``"nonpositive"`` (sub-problem optimum <= 0:
            go to the certificate), ``"budget"`` (``max_iterations`` spent before a decision; ``rho_upper``
            and ``rho_lower`` hold as for ``"early"``), or ``"error"``.
        rho_upper: sub-problem optimum, an upper bound on the full relative radius.
        rho_lower: smallest margin over all rows at ``u`` (a lower bound when positive).
        u: ``(m,)`` point in the scaled box (``x = B u``).
        rows: ids of the rows in the final sub-problem.
        duals: ``(len(rows),)`` non-negative row duals of the final sub-problem.
        rounds: LP solves; message: details for errors.
        iterations: simplex iterations of all solves.
    """

    kind: str
    rho_upper: float
    rho_lower: float
    u: np.ndarray
    rows: np.ndarray
    duals: np.ndarray
    rounds: int
    message: str = ""
    iterations: int = 0


def maximise_radius(
    problem: Problem,
    initial_rows: np.ndarray,
    *,
    exact: bool,
    epsilon: float,
    basis: np.ndarray | None = None,
    add_rows: int = 64,
    max_rounds: int = 200,
    time_limit: float | None = None,
    stop_below: float | None = None,
    known_lower: float = -np.inf,
    max_iterations: int | None = None,
) -> LPOutcome:
    """Constraint generation for the Chebyshev LP of ``problem``.

    Args:
        problem: the sign pattern in LP units.
        initial_rows: row ids of the first sub-problem (unusable rows are ignored).
        exact: run until no row is violated (exact radius); otherwise stop as soon as the
            verdict and the epsilon decision are settled: a positive lower bound, and either
            ``rho_lower >= epsilon`` or ``rho_upper < epsilon``.
        epsilon: the epsilon threshold on the relative radius.
        basis: optional ``(m, q)`` orthonormal columns; then ``u = basis @ v`` is restricted to
            their span with ``|v|_inf <= 1/sqrt(q)`` (so ``|u|_inf <= 1``): a cheap search for a
            witness whose optimum is only a lower bound for the full problem.
        add_rows: most violated rows added per round.
        max_rounds: cap on LP solves.
        time_limit: HiGHS time limit per solve, seconds.
        stop_below: in a subspace search, give up once the optimum falls below this.
        known_lower: relative radius of a witness the caller already holds; with it the search
            may stop as soon as the optimum falls below ``epsilon``.
        max_iterations: stop with kind ``"budget"`` once the solves have spent this many simplex
            iterations without a decision (``None``: only ``max_rounds`` and the per-solve caps bound them).

    Returns:
        :class:`LPOutcome`.
    """
    m = problem.unit_rows.shape[1]
    q = m if basis is None else basis.shape[1]
    var_bound = 1.0 if basis is None else 1.0 / np.sqrt(q)
    lp = _RowLP(q, var_bound, time_limit)
    bound = np.nan
    if not exact and basis is None and known_lower > 0:
        # A witness is known: only "radius >= epsilon?" is open, so the dual simplex may stop
        # as soon as it proves the optimum below epsilon (a hair below, for a strict answer).
        bound = epsilon * (1.0 - 1e-9)
        lp.stop_below(bound)
    in_lp = np.zeros(len(problem.signs), dtype=bool)
    rows = np.unique(np.asarray(initial_rows, dtype=np.int64))
    rows = rows[problem.usable[rows]]
    order: list[np.ndarray] = []

    def add(new_rows: np.ndarray) -> None:
        coefficients = problem.signs[new_rows, None] * problem.unit_rows[new_rows]
        if basis is not None:
            coefficients = coefficients @ basis
        lp.add_rows(coefficients, -problem.signs[new_rows] * problem.offsets[new_rows])
        in_lp[new_rows] = True
        order.append(new_rows)

    if len(rows):
        add(rows)
    rounds = 0
    while True:
        rounds += 1
        error, v, rho, duals = lp.solve()
        active = np.concatenate(order) if order else np.zeros(0, dtype=np.int64)
        if error == "bound":
            # Proven rho_sub <= bound < epsilon; the caller's witness settles the status.
            return LPOutcome("bound", bound, -np.inf, np.zeros(m), active, duals, rounds, iterations=lp.iterations)
        if error is not None:
            return LPOutcome("error", np.nan, np.nan, np.zeros(m), active, duals, rounds, error, lp.iterations)
        u = v if basis is None else basis @ v
        if rho <= ZERO_RADIUS:
            return LPOutcome("nonpositive", rho, -np.inf, u, active, duals, rounds, iterations=lp.iterations)
        margins = problem.margins(u)
        lower = float(margins.min()) if len(margins) else rho
        violated = np.flatnonzero((margins < rho - GENERATION_TOLERANCE) & ~in_lp)
        if len(violated) == 0:
            return LPOutcome("optimal", rho, min(lower, rho), u, active, duals, rounds, iterations=lp.iterations)
        if not exact and max(lower, known_lower) > 0 and (lower >= epsilon or rho < epsilon):
            return LPOutcome("early", rho, lower, u, active, duals, rounds, iterations=lp.iterations)
        if stop_below is not None and rho < stop_below:
            return LPOutcome("early", rho, lower, u, active, duals, rounds, iterations=lp.iterations)
        if rounds >= max_rounds:
            message = f"no convergence in {max_rounds} rounds"
            return LPOutcome("error", rho, lower, u, active, duals, rounds, message, lp.iterations)
        if max_iterations is not None and lp.iterations >= max_iterations:
            return LPOutcome("budget", rho, lower, u, active, duals, rounds, iterations=lp.iterations)
        worst = violated[np.argsort(margins[violated], kind="stable")[:add_rows]]
        add(worst)


@dataclass
class ConeOutcome:
    """Result of :func:`min_norm_point`.

    Attributes:
        kind: ``"certificate"`` (the min-norm point is 0: ``weights`` on ``rows`` is a Farkas
            certificate), ``"witness"`` (``point`` has a positive margin on every row), or ``"error"``.
        rows: row ids of the last sub-problem.
        weights: ``(len(rows),)`` non-negative weights (sum 1) of the min-norm point.
        point: ``(q,)`` the min-norm point ``sum_i weights_i sigma_i h_i``.
        rounds: NNLS solves; message: details for errors.
    """

    kind: str
    rows: np.ndarray
    weights: np.ndarray
    point: np.ndarray
    rounds: int
    message: str = ""


def min_norm_point(
    problem: Problem,
    initial_rows: np.ndarray,
    *,
    add_rows: int = 400,
    max_rounds: int = 50,
    zero_norm: float = 1e-12,
) -> ConeOutcome:
    """Decide a homogeneous strict system ``sigma_i h_i . z > 0`` by the min-norm point of ``conv{sigma_i h_i}``.

    By Gordan's theorem the system has a solution iff ``0`` is not in the convex hull of the
    signed unit rows. The min-norm point ``p`` of the hull of a subset of rows is found by
    non-negative least squares (``scipy.optimize.nnls`` on ``[H^T; 1^T] y = [0; 1]``); if it is
    0 its weights are a certificate for the whole system, otherwise ``p`` has margin
    ``>= ||p||^2`` on the subset, rows of the full system with a smaller margin are added, and
    the search stops as soon as ``p`` has a positive margin on every row (a witness). The
    distance decreases strictly at every round, so the loop terminates.

    Args:
        problem: homogenised unit rows (``offsets`` are ignored), signs and usable rows.
        initial_rows: first subset of rows.
        add_rows: most violated rows added per round; rows with zero weight are dropped.
        max_rounds: cap on NNLS solves.
        zero_norm: ``||p||`` at or below this counts as 0.

    Returns:
        :class:`ConeOutcome`.
    """
    rows = np.unique(np.asarray(initial_rows, dtype=np.int64))
    rows = rows[problem.usable[rows]]
    q = problem.unit_rows.shape[1]
    for rounds in range(1, max_rounds + 1):
        signed = problem.signs[rows, None] * problem.unit_rows[rows]  # (k, q)
        system = np.vstack([signed.T, np.ones((1, len(rows)))])
        target = np.zeros(q + 1)
        target[-1] = 1.0
        try:
            weights, _ = nnls(system, target, maxiter=50 * max(len(rows), 10))
        except RuntimeError as error:  # iteration limit
            return ConeOutcome("error", rows, np.zeros(len(rows)), np.zeros(q), rounds, str(error))
        total = weights.sum()
        if not total > 0:
            return ConeOutcome("error", rows, weights, np.zeros(q), rounds, "NNLS returned zero weights")
        weights = weights / total
        point = weights @ signed
        distance = float(np.linalg.norm(point))
        if distance <= zero_norm:
            return ConeOutcome("certificate", rows, weights, point, rounds)
        margins = problem.signs * (problem.unit_rows @ point)
        margins[~problem.usable] = np.inf
        if np.all(margins > 0):
            return ConeOutcome("witness", rows, weights, point, rounds)
        in_set = np.zeros(len(margins), dtype=bool)
        in_set[rows] = True
        violated = np.flatnonzero((margins < distance**2 * (1 - 1e-12)) & ~in_set)
        if len(violated) == 0:
            return ConeOutcome("error", rows, weights, point, rounds, "no violated row but a non-positive margin")
        worst = violated[np.argsort(margins[violated], kind="stable")[:add_rows]]
        rows = np.union1d(rows[weights > 0], worst)
    return ConeOutcome("error", rows, weights, point, max_rounds, f"no decision in {max_rounds} NNLS rounds")


def polish_certificate(problem: Problem, rows: np.ndarray, duals: np.ndarray) -> np.ndarray:
    """Refine LP duals into a certificate with a smaller residual (non-negative least squares).

    Solves ``min ||sum_i y_i a_i||^2 + (sum_i y_i - 1)^2`` over ``y >= 0`` on the support of the
    duals (``a_i`` the signed unit rows), which removes the solver's tolerance-level residual.

    Returns:
        ``(len(rows),)`` non-negative weights in LP units (scaled to sum 1).
    """
    support = np.flatnonzero(duals > 1e-14 * max(duals.max(initial=0.0), 1e-300))
    if len(support) == 0:
        return duals
    chosen = rows[support]
    system = np.vstack([(problem.signs[chosen, None] * problem.unit_rows[chosen]).T, np.ones((1, len(chosen)))])
    target = np.zeros(system.shape[0])
    target[-1] = 1.0
    weights, _ = nnls(system, target, maxiter=50 * len(chosen))
    out = np.zeros_like(duals)
    out[support] = weights
    return out
