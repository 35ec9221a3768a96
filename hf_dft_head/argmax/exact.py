"""Exact-arithmetic proofs about a head stored in float64: witnesses, Farkas certificates, box exclusion.

Every float64 number is a dyadic rational ``k 2^e``, so a head ``(W, b)`` in float64 *is* an exact rational
head, and "argmaxable" / "unargmaxable" are statements about it in exact arithmetic. This module decides
them rigorously, never trusting a rounded float where the sign matters:

* **Witness** (:func:`witness_signs`): ``x`` realises the sign pattern ``sigma`` iff every
  ``sigma_i (w_i . x + b_i) > 0`` exactly. A floating-point filter decides most rows: a dot product of
  ``k`` terms evaluated in IEEE float64 in *any* order, with or without FMA, is within
  ``gamma_k sum_j |a_j b_j|`` of the exact value, ``gamma_k = k u / (1 - k u)``, ``u = 2^-53`` (Higham,
  *Accuracy and Stability of Numerical Algorithms*, 2nd ed., section 3.1); the bound used here doubles
  that and adds ``2^-960`` for underflow. Rows whose float margin is within the bound, or not finite, are
  summed exactly in Python integers (each float as ``mantissa * 2^exponent``).
* **Farkas certificate** (:func:`prove_farkas`): ``y >= 0``, ``y != 0`` on rows ``R`` with
  ``sum_i y_i sigma_i w_i = 0`` and ``sum_i y_i sigma_i b_i <= 0`` *exactly* proves that no ``x`` in ``R^m``
  realises the pattern (if one did, ``y . (sigma (W x + b)) > 0``, yet it equals ``sum y_i sigma_i b_i <= 0``;
  ``<= 0`` suffices because the inequalities are strict). A float ``y`` never makes the first sum exactly
  zero, so only its *support* is used: the exact certificate on that support is the null vector of
  ``A_R^T`` (``A`` the signed rows), unique up to scale when the support is a circuit. It is proven either
  by an *exact rational solve* (fraction-free Gaussian elimination in Python integers, small supports) or,
  for a square system ``[A_R^T; 1^T] y = e`` (``|R| = rank + 1 = m + 1``), by a *verified float64 solve*:
  with ``X ~ M^-1`` and rigorous bounds on ``||I - X M||`` and on the residual, the exact solution is
  enclosed in ``z +- d`` (Rump's normwise bound, refined componentwise); ``z > d`` proves ``y > 0``, and an
  upper bound on ``c . y`` below zero (or ``c`` exactly proportional to a column of ``A_R``, which makes
  ``c . y = 0`` exactly, e.g. the constant bias of a DFT head) proves the gap.
* **Box exclusion** (:func:`prove_box_empty`): any ``y >= 0`` with
  ``B ||sum_i y_i sigma_i w_i||_1 + sum_i y_i sigma_i b_i < 0`` proves that no ``x`` with ``|x|_inf <= B``
  realises the pattern (a bound, so rigorous float bounds suffice). It says nothing outside the box.

Assumptions: IEEE 754 binary64 arithmetic in numpy (round to nearest); no extended precision.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from scipy.linalg import qr, solve_triangular

#: Unit roundoff of float64.
UNIT_ROUNDOFF = 2.0**-53
#: Absolute slack added to every error bound; far above any sum of float64 underflow errors.
UNDERFLOW_SLACK = 2.0**-960
#: Largest support (rows) that the exact rational solve handles; larger ones need the square verified path.
EXACT_MAX_ROWS = 48
#: Relative singular-value threshold of the numerical rank used to reduce a support to a circuit.
RANK_TOLERANCE = 1e-9


def gamma(k: int) -> float:
    """``gamma_k = k u / (1 - k u)``: relative error bound of a float64 sum of ``k`` products."""
    return k * UNIT_ROUNDOFF / (1.0 - k * UNIT_ROUNDOFF)


def _inflate(values, terms: int):
    """Upper bound on the exact value of a non-negative float expression of ``terms`` operations."""
    return np.asarray(values, dtype=np.float64) * (1.0 + 4.0 * gamma(terms + 2)) + UNDERFLOW_SLACK


def _dyadic(values: np.ndarray) -> tuple[list[int], list[int]]:
    """Exact ``(mantissas, exponents)`` of float64 ``values`` (1-D): ``v = mantissa * 2^exponent``, ints."""
    mantissa, exponent = np.frexp(np.asarray(values, dtype=np.float64))
    return np.ldexp(mantissa, 53).astype(np.int64).tolist(), (exponent.astype(np.int64) - 53).tolist()


def _exact_dot_sign(row: np.ndarray, x_dyadic: tuple[list[int], list[int]], offset: float) -> int:
    """Exact sign (-1, 0, 1) of ``row . x + offset`` over the float64 values, in Python integers."""
    row_mantissa, row_exponent = _dyadic(row)
    x_mantissa, x_exponent = x_dyadic
    terms = [(a * c, e + f) for a, e, c, f in zip(row_mantissa, row_exponent, x_mantissa, x_exponent) if a and c]
    if offset != 0.0:
        (b_mantissa,), (b_exponent,) = _dyadic(np.array([offset]))
        terms.append((b_mantissa, b_exponent))
    if not terms:
        return 0
    low = min(e for _, e in terms)
    total = sum(v << (e - low) for v, e in terms)
    return (total > 0) - (total < 0)


@dataclass
class WitnessSigns:
    """Outcome of :func:`witness_signs`.

    Attributes:
        holds: every signed logit ``sigma_i (w_i . x + b_i)`` is ``> 0`` in exact arithmetic.
        bad_row: the first row (lowest float margin) whose exact signed logit is ``<= 0``, else ``-1``.
        lower: ``(n,)`` proven lower bounds on the exact signed logits (``0`` where only the sign is known).
        logits: ``(n,)`` the logits ``W x + b`` as computed in float64 (for the float64 dtype check).
        exact_rows: rows that the float filter could not decide and were summed exactly.
    """

    holds: bool
    bad_row: int
    lower: np.ndarray
    logits: np.ndarray
    exact_rows: int


def witness_signs(weight: np.ndarray, bias: np.ndarray, signs: np.ndarray, x: np.ndarray) -> WitnessSigns:
    """Decide in exact arithmetic whether ``x`` realises ``signs`` for the float64 head ``(weight, bias)``.

    Args:
        weight: ``(n, m)`` float64; bias: ``(n,)`` float64; signs: ``(n,)`` of +1/-1; x: ``(m,)`` float64.

    Returns:
        :class:`WitnessSigns`. Cost: two float mat-vecs, plus ``O(m)`` integer operations per row that the
        filter leaves open (rows whose margin is within about ``2 (m + 2) u (|w_i| . |x| + |b_i|)`` of zero).
    """
    n, m = weight.shape
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        logits = weight @ x + bias
        magnitude = np.abs(weight) @ np.abs(x) + np.abs(bias)
        error = _inflate(magnitude, m + 1) * (2.0 * gamma(m + 1))
        signed = signs * logits
    lower = np.where(signed > error, signed - error, 0.0)
    lower = np.where(np.isfinite(lower), lower * (1.0 - 2.0 * UNIT_ROUNDOFF), 0.0)
    proven = np.isfinite(signed) & np.isfinite(error) & (signed > error)
    disproven = np.isfinite(signed) & np.isfinite(error) & (signed < -error)
    open_rows = np.flatnonzero(~proven & ~disproven)
    bad = -1
    if disproven.any():
        bad = int(np.flatnonzero(disproven)[np.argmin(signed[disproven])])
    elif len(open_rows):
        x_dyadic = _dyadic(x)
        # Lowest float margins first: a failure, if any, is found early.
        for row in open_rows[np.argsort(np.nan_to_num(signed[open_rows], nan=-np.inf), kind="stable")]:
            if signs[row] * _exact_dot_sign(weight[row], x_dyadic, float(bias[row])) <= 0:
                bad = int(row)
                break
    return WitnessSigns(bad < 0, bad, lower, logits, len(open_rows))


@dataclass
class CertificateProof:
    """Outcome of :func:`prove_farkas`; truthy iff ``valid``.

    Attributes:
        valid: an exact Farkas certificate exists on ``rows`` (so no ``x`` anywhere realises the pattern).
        rows: row ids of the proven support (a subset of the rows given).
        weights: ``(len(rows),)`` float64 approximation of the exact certificate (sum 1), or empty.
        method: ``"exact rational solve"``, ``"verified float64 solve"``, ``"zero row"`` or ``""``.
        reason: what was proven, or why not.
    """

    valid: bool
    rows: np.ndarray
    weights: np.ndarray
    method: str
    reason: str

    def __bool__(self) -> bool:
        return self.valid


def _failed(reason: str) -> CertificateProof:
    return CertificateProof(False, np.zeros(0, dtype=np.int64), np.zeros(0), "", reason)


def _power_of_two_scale(matrix: np.ndarray, axis: int) -> np.ndarray:
    """Powers of two ``2^-e`` bringing the largest entry along ``axis`` into ``[0.5, 1)``, or ones when that
    scaling would not be exact (an entry would lose bits to underflow or overflow)."""
    peak = np.abs(matrix).max(axis=axis)
    _, exponent = np.frexp(np.where(peak > 0, peak, 1.0))
    scale = np.ldexp(1.0, -exponent)
    shape = (-1, 1) if axis == 1 else (1, -1)
    with np.errstate(over="ignore", under="ignore"):
        if not np.array_equal((matrix * scale.reshape(shape)) / scale.reshape(shape), matrix):
            return np.ones_like(scale)
    return scale


def _gap_is_zero_by_column(signed_rows: np.ndarray, offsets: np.ndarray) -> bool:
    """Whether ``offsets`` is exactly ``lambda * signed_rows[:, j]`` for some column ``j`` (then ``c . y = 0``
    for every exact ``y`` with ``signed_rows^T y = 0``). Vectorised float screen, then an exact check in fractions."""
    if not np.any(offsets):
        return True
    zero_pattern = np.all((signed_rows == 0.0) == (offsets == 0.0)[:, None], axis=0)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        ratios = np.where(offsets[:, None] != 0.0, offsets[:, None] / signed_rows, np.nan)
        spread = np.nanmax(ratios, axis=0) - np.nanmin(ratios, axis=0)
        close = zero_pattern & (spread <= 1e-12 * np.nanmax(np.abs(ratios), axis=0))
    for j in np.flatnonzero(close):
        column = signed_rows[:, j]
        pivot = int(np.argmax(np.abs(column)))
        exact_ratio = Fraction(float(offsets[pivot])) / Fraction(float(column[pivot]))
        if all(Fraction(float(o)) == exact_ratio * Fraction(float(a)) for o, a in zip(offsets, column)):
            return True
    return False


def _verified_square_solve(matrix: np.ndarray, rhs: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Enclosure ``|z* - z| <= d`` of the exact solution ``z*`` of ``matrix z = rhs`` (square, float64 taken exact).

    Rump's criterion: with any ``X``, if ``alpha >= ||I - X M||_inf`` (proven) is below 1, ``M`` is invertible and
    ``||z* - z||_inf <= || |X| |r| ||_inf / (1 - alpha)`` for a proven bound ``|r| <= rb`` on ``r = rhs - M z``;
    componentwise ``|z* - z| <= |X| rb + |I - X M| 1 ||z* - z||_inf``. Every float quantity is inflated by its
    rounding-error bound. Returns ``(z, d)`` or ``None`` when the criterion fails (singular or ill-conditioned).
    """
    size = matrix.shape[0]
    try:
        inverse = np.linalg.inv(matrix)
    except np.linalg.LinAlgError:
        return None
    with np.errstate(over="ignore", invalid="ignore"):
        z = inverse @ rhs
        z = z + inverse @ (rhs - matrix @ z)  # one refinement step: smaller residual, tighter enclosure
        residual = rhs - matrix @ z
        abs_matrix, abs_inverse = np.abs(matrix), np.abs(inverse)
        residual_bound = _inflate(np.abs(residual) + 2.0 * gamma(size + 1) * (abs_matrix @ np.abs(z) + np.abs(rhs)), 3)
        product = inverse @ matrix
        defect = np.abs(np.eye(size) - product) * (1.0 + 2.0 * UNIT_ROUNDOFF)
        defect_bound = _inflate(defect + 2.0 * gamma(size) * (abs_inverse @ abs_matrix), size + 2)
        row_sums = _inflate(defect_bound.sum(axis=1), size)
        alpha = float(row_sums.max())
        if not (np.isfinite(alpha) and alpha < 0.5) or not np.all(np.isfinite(z)):
            return None
        correction = _inflate(abs_inverse @ residual_bound, size)
        normwise = float(_inflate(correction.max() / ((1.0 - alpha) * (1.0 - 4.0 * UNIT_ROUNDOFF)), 2))
        distance = _inflate(correction + row_sums * normwise, 2)
    if not np.all(np.isfinite(distance)):
        return None
    return z, distance


def _verified_certificate(signed_rows: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, str] | None:
    """Prove a certificate on ``s = m + 1`` rows by a verified float64 solve. Returns ``(weights, reason)``."""
    count, dim = signed_rows.shape
    # Exact power-of-two scalings keep the verified solve well conditioned without changing signs.
    column_scale = _power_of_two_scale(signed_rows, axis=1)  # per row of A (unknown y_i)
    scaled = signed_rows * column_scale[:, None]
    equation_scale = _power_of_two_scale(scaled, axis=0)  # per coordinate (equation)
    matrix = np.vstack([(scaled * equation_scale[None, :]).T, np.ones((1, count))])
    rhs = np.zeros(count)
    rhs[-1] = 1.0
    solved = _verified_square_solve(matrix, rhs)
    if solved is None:
        return None
    z, distance = solved
    if not np.all(z > distance):
        return None  # some exact weight may be <= 0: not proven
    # z sums to 1 and is positive, so an underflow in these products is covered by UNDERFLOW_SLACK.
    scaled_offsets = offsets * column_scale
    value = float(scaled_offsets @ z)
    slack = float(
        _inflate(
            2.0 * gamma(count) * (np.abs(scaled_offsets) @ np.abs(z)) + np.abs(scaled_offsets) @ distance, count + 2
        )
    )
    if not np.any(offsets):
        gap = "no bias on these rows"
    elif np.isfinite(value) and np.isfinite(slack) and -value > slack:
        gap = f"sum_i y_i sigma_i b_i <= {value + slack:.3g} < 0"
    elif _gap_is_zero_by_column(signed_rows, offsets):
        gap = "sum_i y_i sigma_i b_i = 0 exactly (bias proportional to a column)"
    else:
        return None
    weights = z * column_scale
    return weights / weights.sum(), f"verified float64 solve on {count} rows in dim {dim}: y > 0, {gap}"


def _integer_rows(matrix: np.ndarray) -> list[list[int]]:
    """Each row of a float64 matrix times a power of two that makes it integral, as Python ints."""
    out = []
    for row in matrix:
        mantissa, exponent = _dyadic(row)
        low = min((e for a, e in zip(mantissa, exponent) if a), default=0)
        out.append([a << (e - low) if a else 0 for a, e in zip(mantissa, exponent)])
    return out


def _solve_exact(system: list[list[int]], rhs: list[int]) -> list[Fraction] | None:
    """Exact solution of a square integer system (fraction-free Bareiss elimination); ``None`` if singular."""
    size = len(system)
    work = [row[:] + [value] for row, value in zip(system, rhs)]
    previous = 1
    for k in range(size):
        pivot = next((i for i in range(k, size) if work[i][k] != 0), None)
        if pivot is None:
            return None
        work[k], work[pivot] = work[pivot], work[k]
        head = work[k]
        for i in range(k + 1, size):
            row = work[i]
            factor = row[k]
            for j in range(k + 1, size + 1):
                row[j] = (row[j] * head[k] - factor * head[j]) // previous
            row[k] = 0
        previous = head[k]
    solution = [Fraction(0)] * size
    for k in range(size - 1, -1, -1):
        total = Fraction(work[k][size]) - sum(Fraction(work[k][j]) * solution[j] for j in range(k + 1, size))
        solution[k] = total / work[k][k]
    return solution


def _exact_certificate(signed_rows: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, str] | str:
    """Prove a certificate on a small support by an exact rational solve. Returns ``(weights, reason)``, or why not.

    The support's ``s`` rows must span ``s - 1`` dimensions exactly: ``s - 1`` numerically independent
    coordinates plus ``sum y = 1`` give a square system solved exactly; the other coordinates are then checked
    exactly (any exact certificate on the support must be this solution, up to scale).
    """
    count, dim = signed_rows.shape
    equations = signed_rows.T  # (dim, count): A^T y = 0
    scaled = equations / np.maximum(np.abs(equations).max(axis=1, keepdims=True), 1e-300)
    chosen = qr(scaled.T, pivoting=True, mode="r")[1][: count - 1] if count > 1 else np.zeros(0, dtype=np.int64)
    if len(chosen) < count - 1:
        return f"the {count} rows span fewer than {count - 1} coordinates"
    integer_equations = _integer_rows(equations)
    system = [integer_equations[j] for j in chosen] + [[1] * count]
    solution = _solve_exact(system, [0] * (count - 1) + [1])
    if solution is None:
        return "the chosen coordinates are exactly dependent"
    if any(value < 0 for value in solution):
        return "the exact null vector of the rows has mixed signs"
    denominator = math.lcm(*(value.denominator for value in solution))
    numerators = [int(value * denominator) for value in solution]
    others = set(range(dim)) - {int(j) for j in chosen}
    for j in sorted(others):
        if sum(a * y for a, y in zip(integer_equations[j], numerators)) != 0:
            return "the rows are not exactly linearly dependent (float64 values, exact arithmetic)"
    gap = sum((Fraction(float(c)) * y for c, y in zip(offsets, solution)), Fraction(0))
    if gap > 0:
        return f"exact gap sum_i y_i sigma_i b_i = {float(gap):.3g} > 0"
    weights = np.array([float(value) for value in solution])
    return weights, f"exact rational solve on {count} rows: y >= 0, sum_i y_i sigma_i b_i = {float(gap):.3g} <= 0"


def _left_null_space(rows: np.ndarray) -> np.ndarray:
    """Basis ``(s, nullity)`` (not orthonormal) of ``{v : v @ rows = 0}`` for ``rows`` ``(s, m)``, numerically.

    Rank-revealing QR of ``rows^T`` with column pivoting (several times cheaper than an SVD at ``s ~ m ~ 400``):
    ``rows^T P = Q R``, rank ``r`` from the diagonal of ``R``, null vectors ``P [-R_11^-1 R_12; I]``.
    """
    count = rows.shape[0]
    _, r, order = qr(rows.T, mode="economic", pivoting=True)
    diagonal = np.abs(np.diag(r))
    rank = int(np.sum(diagonal > RANK_TOLERANCE * diagonal[0])) if diagonal.size and diagonal[0] > 0 else 0
    free = count - rank
    null = np.zeros((count, free))
    if free == 0:
        return null
    null[order[rank:], np.arange(free)] = 1.0
    if rank:
        null[order[:rank]] = -solve_triangular(r[:rank, :rank], r[:rank, rank:count])
    return null


def _circuit(signed_rows: np.ndarray, offsets: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Shrink a support to a circuit (rows spanning ``s - 1`` dims numerically) while lowering ``c . y``.

    Carathéodory step: while the left null space of the rows has dimension >= 2, move ``y`` along the null
    direction ``v`` of steepest descent of the gap ``c . y`` (any null direction when the gap is constant there)
    until a weight reaches zero, and drop that row; a direction with no negative entry is itself a better
    certificate and replaces ``y``. Numerical only: the result is a candidate support for the exact proofs.
    Returns the kept positions.
    """
    keep = np.arange(len(y))
    # Work with unit rows: weights y_i ||a_i|| on them, offsets c_i / ||a_i||.
    norms = np.maximum(np.linalg.norm(signed_rows, axis=1), 1e-300)
    weights = y * norms
    units = signed_rows / norms[:, None]
    offsets = offsets / norms
    while len(keep) > 1:
        null = _left_null_space(units[keep])
        if null.shape[1] <= 1:
            break
        along = null.T @ offsets[keep]
        descent = -(null @ along)  # steepest descent of the gap inside the null space
        direction = None
        if np.linalg.norm(descent) > 1e-12 * max(np.linalg.norm(offsets[keep]), 1e-300):
            tiny = 1e-12 * np.abs(descent).max()
            if descent.min() < -tiny:
                direction = descent
            else:
                # descent >= 0, A^T descent = 0, c . descent < 0: a certificate with a lower gap on its own.
                weights[keep] = np.where(descent > tiny, descent, 0.0)
                shrunk = keep[weights[keep] > 0]
                if len(shrunk) < len(keep):
                    keep = shrunk
                    continue
        if direction is None:
            # A gap-neutral null direction (c . v = 0; one exists since the nullity is >= 2), either sign.
            direction = null @ np.linalg.svd(along[None, :])[2][-1]
            tiny = 1e-12 * np.abs(direction).max()
            if direction.min() >= -tiny:
                direction = -direction
            if direction.min() >= -tiny:
                break
        negative = direction < -tiny
        steps = weights[keep][negative] / -direction[negative]
        weights[keep] = weights[keep] + steps.min() * direction
        keep = np.delete(keep, np.flatnonzero(negative)[np.argmin(steps)])
        keep = keep[weights[keep] > 0]
        if null.shape[1] == 2:
            break  # one row fewer: nullity 1 unless the rank dropped too (the exact proofs will tell)
    return keep


def prove_farkas(
    weight: np.ndarray, bias: np.ndarray, signs: np.ndarray, rows: np.ndarray, y: np.ndarray
) -> CertificateProof:
    """Prove in exact arithmetic that no ``x`` realises ``signs``, from a float certificate ``y`` on ``rows``.

    Only the support of ``y`` (and, to shrink a redundant support, its values) is used: see the module
    docstring for the two proofs. A support that carries no exact certificate (for example rows that are
    dependent only up to rounding, or a positive exact gap) is reported as not proven.

    Args:
        weight: ``(n, m)`` float64; bias: ``(n,)`` float64; signs: ``(n,)`` of +1/-1.
        rows: int row ids; y: ``(len(rows),)`` non-negative float weights.

    Returns:
        :class:`CertificateProof`.
    """
    rows = np.asarray(rows, dtype=np.int64)
    y = np.asarray(y, dtype=np.float64)
    positive = y > 0
    rows, y = rows[positive], y[positive]
    if len(rows) == 0:
        return _failed("no positive weight")
    signed_rows = signs[rows, None] * weight[rows]  # sign flips are exact
    offsets = signs[rows] * bias[rows]
    zero = ~np.any(signed_rows != 0.0, axis=1)
    wrong = np.flatnonzero(zero & (offsets <= 0))
    if len(wrong):
        row = rows[wrong[:1]]
        return CertificateProof(
            True, row, np.ones(1), "zero row", f"row {row[0]} is zero and its bias has the wrong sign"
        )
    rows, y, signed_rows, offsets = rows[~zero], y[~zero], signed_rows[~zero], offsets[~zero]
    if len(rows) == 0:
        return _failed("only zero rows with a bias of the right sign")
    # Coordinates where every row of the support is exactly zero are the equation 0 = 0: drop them.
    signed_rows = signed_rows[:, np.any(signed_rows != 0.0, axis=0)]
    reasons = []
    support = np.arange(len(rows))
    for attempt in range(2):
        count, dim = len(support), signed_rows.shape[1]
        if count == dim + 1:
            proven = _verified_certificate(signed_rows[support], offsets[support])
            if proven is not None:
                return CertificateProof(True, rows[support], proven[0], "verified float64 solve", proven[1])
            reasons.append(f"verified solve on {count} rows inconclusive")
        if 1 < count <= min(dim + 1, EXACT_MAX_ROWS):
            proven = _exact_certificate(signed_rows[support], offsets[support])
            if not isinstance(proven, str):
                return CertificateProof(True, rows[support], proven[0], "exact rational solve", proven[1])
            reasons.append(proven)
        elif count > EXACT_MAX_ROWS and count != dim + 1:
            reasons.append(f"{count} rows in dim {dim}: too many for the exact rational solve")
        if attempt == 0:
            reduced = _circuit(signed_rows, offsets, y)
            if len(reduced) == len(support) or len(reduced) < 2:
                break
            support = reduced
            # Coordinates that vanish on the smaller support drop out as well.
            signed_rows = signed_rows[:, np.any(signed_rows[support] != 0.0, axis=0)]
            signed_rows, offsets, rows, y = signed_rows[support], offsets[support], rows[support], y[support]
            support = np.arange(len(rows))
    return _failed("; ".join(reasons) or f"no circuit among the {len(rows)} rows of the support")


def prove_box_empty(
    weight: np.ndarray, bias: np.ndarray, signs: np.ndarray, rows: np.ndarray, y: np.ndarray, box: float
) -> bool:
    """Prove that no ``x`` with ``|x|_inf <= box`` realises ``signs``, from any ``y >= 0`` on ``rows``.

    For such ``x``, ``sum_i y_i sigma_i (w_i . x + b_i) <= box ||sum_i y_i sigma_i w_i||_1 + sum_i y_i sigma_i b_i``;
    a proven negative upper bound contradicts every signed logit being positive. Float bounds, rigorously inflated.
    """
    rows = np.asarray(rows, dtype=np.int64)
    y = np.asarray(y, dtype=np.float64)
    if len(rows) == 0 or np.any(y < 0) or not np.any(y > 0) or not np.all(np.isfinite(y)):
        return False
    signed_rows = signs[rows, None] * weight[rows]
    offsets = signs[rows] * bias[rows]
    count = len(rows)
    with np.errstate(over="ignore", invalid="ignore"):
        combination = y @ signed_rows
        combination_error = 2.0 * gamma(count) * (y @ np.abs(signed_rows))
        norm_bound = _inflate(np.sum(np.abs(combination) + combination_error), signed_rows.shape[1])
        gap = float(y @ offsets)
        gap_error = 2.0 * gamma(count) * float(y @ np.abs(offsets))
        total_slack = float(_inflate(box * norm_bound + gap_error, 3))
    return bool(np.isfinite(gap) and np.isfinite(total_slack) and -gap > total_slack)
