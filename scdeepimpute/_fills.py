"""What fills a zero: fills and policies, the layer of each fill, and the heads' numpy post-processing.

The post-processing turns the network's two heads into counts through a Poisson link, and into the expected
log-normalised expression (the ``"lognorm"`` fill).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Literal

import numpy as np

#: What fills a zero: ``"expected"`` = P(detected) x value-if-detected, ``"detected"`` = value-if-detected;
#: ``"lognorm"`` is not a count: the expected ``log1p(normalize_total(target_sum=LOG_TARGET_SUM))`` value.
Fill = Literal["expected", "detected", "lognorm"]
#: Which entries of a target gene get the model's value: zeros only, all, or the larger of observed and model.
Policy = Literal["restore", "all", "max"]

FILLS: tuple[str, ...] = ("expected", "detected", "lognorm")
POLICIES: tuple[str, ...] = ("restore", "all", "max")
#: Fills that read the detection head.
_NEED_DETECTION = ("expected", "lognorm")
#: Counts per cell of the ``"lognorm"`` fill's normalisation (Seurat's and Open Problems' ``1e4``).
LOG_TARGET_SUM = 1e4


def default_fills(detection_head: bool) -> tuple[Fill, ...]:
    """Return the fills a model computes unless told otherwise, the preferred first: both with a detection head."""
    return ("expected", "detected") if detection_head else ("detected",)


def output_names(fills: Sequence[str], key_added: str = "imputed") -> dict[str, str]:
    """Layer name of each fill, as :func:`scdeepimpute.pp.deepimpute` names them.

    The first fill gets ``key_added``, every other one ``f"{key_added}_{fill}"``.

    Examples
    --------
    >>> from scdeepimpute.dask import output_names
    >>> output_names(("expected", "detected"))
    {'expected': 'imputed', 'detected': 'imputed_detected'}
    """
    fills = tuple(fills)
    return {f: key_added if i == 0 else f"{key_added}_{f}" for i, f in enumerate(fills)}


def check_fills(fills: Sequence[str], policy: str, *, detection_head: bool) -> None:
    """``ValueError`` for an unknown policy or fill, or ``"expected"`` without a detection head."""
    if policy not in POLICIES:
        msg = f"unknown policy {policy!r}; use 'restore', 'all' or 'max'."
        raise ValueError(msg)
    for f in fills:
        if f not in FILLS:
            msg = f"unknown fill {f!r}; use one of {', '.join(map(repr, FILLS))}."
            raise ValueError(msg)
        if f in _NEED_DETECTION and not detection_head:
            msg = f"fill={f!r} needs a model trained with detection_head=True; use fill='detected'."
            raise ValueError(msg)


def detected_log1p(value: np.ndarray, prob: np.ndarray | None, *, zero_fraction, log_max: float) -> np.ndarray:
    """Combine the heads' outputs into the network's value if detected, log1p (``value`` is modified in place)."""
    # the original's overflow guard: absurd log values (or NaN) are dropped to 0
    value[~(value <= 2 * log_max)] = 0.0
    if prob is None:  # one head (paper): the value head alone
        return value
    # value head and the detection head's Poisson-link level, weighted by the gene's zero fraction
    return value_if_detected(value, prob, zero_fraction)


def fill_chunk(
    out: dict[str, np.ndarray],
    raw: np.ndarray,
    target_genes: np.ndarray,
    value: np.ndarray,
    prob: np.ndarray | None,
    *,
    zero_fraction: np.ndarray | None,
    log_max: float,
    policy: Policy,
    neighbourhood: np.ndarray | None = None,
    weight: float = 0.0,
    totals: np.ndarray | None = None,
    dispersion: np.ndarray | None = None,
) -> None:
    """Write every fill of one chunk of cells into ``out[fill]`` (views of the output's rows).

    ``raw`` holds the chunk's counts (dense, every gene); ``value`` (log1p) and ``prob`` the heads' outputs for
    ``target_genes``, one column each; non-target genes keep their counts (log-normalised in ``"lognorm"``).
    ``neighbourhood`` (log1p, same shape as ``value``) is blended into the value if detected with ``weight``.
    ``totals``: each cell's total count for ``"lognorm"`` (default: the sum of ``raw``'s row); ``dispersion``:
    its per-target spread of counts around the model (:func:`gene_dispersion`; ``None``: the model alone).
    """
    log_detected = detected_log1p(value, prob, zero_fraction=zero_fraction, log_max=log_max)
    if neighbourhood is not None and weight > 0:
        from ._neighbors import blend_values

        log_detected = blend_values(log_detected, neighbourhood.astype(np.float32, copy=False), weight)
    detected = np.expm1(log_detected)
    observed = raw[:, target_genes]
    for f, block in out.items():
        if f == "lognorm":
            rate = prob * detected
            if dispersion is not None:
                rate = posterior_rate(raw[:, target_genes], rate, dispersion)
            _lognorm_chunk(block, raw, target_genes, rate, totals)
            continue
        # "expected" = P(detected) x value-if-detected, so it never exceeds the "detected" fill
        estimate = detected if f == "detected" else prob * detected
        if policy == "restore":
            estimate = np.where(observed > 0, observed, estimate)
        elif policy == "max":
            estimate = np.maximum(observed, estimate)
        block[:] = raw  # a view: written in place, no per-fill copy of the chunk
        block[:, target_genes] = estimate


def gene_dispersion(counts: np.ndarray, rate: np.ndarray) -> np.ndarray:
    """Each gene's spread of ``counts`` around the model's ``rate`` beyond Poisson noise, 1 / Gamma shape.

    Moments of a Gamma-Poisson (negative binomial) with mean ``rate``: E (x - rate)^2 = rate + rate^2 / shape,
    so ``sum((x - rate)^2 - rate) / sum(rate^2)`` per gene (columns); clipped to ``[1e-6, 1e6]``: from "the
    model explains the gene" to "only the observed count does".
    """
    counts = np.asarray(counts, dtype=np.float64)
    rate = np.asarray(rate, dtype=np.float64)
    excess = ((counts - rate) ** 2 - rate).sum(axis=0)
    scale = (rate**2).sum(axis=0)
    inverse = np.divide(excess, scale, out=np.full(scale.shape, 1e6), where=scale > 0)
    return np.clip(inverse, 1e-6, 1e6)


def posterior_rate(observed: np.ndarray, rate: np.ndarray, dispersion: np.ndarray) -> np.ndarray:
    """Return the rate given the observed count, under a Gamma prior of mean ``rate`` and 1 / shape ``dispersion``.

    ``(x + a) rate / (rate + a)`` with shape ``a``: the observed count weighs in as ``rate / (rate + a)``, so
    a deep, well-measured entry keeps close to its count, and a shallow one (or a gene the model explains,
    small ``dispersion``) close to the model; a zero lowers the rate below the model's.
    """
    shape = np.float32(1.0) / np.asarray(dispersion, dtype=np.float32)
    rate = np.asarray(rate, dtype=np.float32)
    denominator = rate + shape
    return np.divide((observed + shape) * rate, denominator, out=np.zeros_like(rate), where=denominator > 0)


def _lognorm_chunk(block: np.ndarray, raw: np.ndarray, target_genes, rate: np.ndarray, totals) -> None:
    """Write the ``"lognorm"`` fill of one chunk: observed log-normalised counts, the model's expectation at targets.

    Every entry of a target gene gets E[log1p(s Y)], Y ~ Poisson(rate), whatever the policy, with ``rate`` the
    model's combined with the observed count (:func:`posterior_rate`): averaging over the counts a cell could
    show is what makes the value an estimate of a replicate's log-normalised expression, not of this draw.
    """
    scale = _log_scale(raw.sum(axis=1, dtype=np.float64) if totals is None else totals)
    np.log1p(raw * scale, out=block)
    block[:, target_genes] = expected_log1p_scaled(rate, scale)


def _log_scale(totals) -> np.ndarray:
    """Each cell's ``LOG_TARGET_SUM / total`` as a float32 column; 0 for a cell without counts."""
    totals = np.asarray(totals, dtype=np.float64).reshape(-1, 1)
    # a cell without counts stays all-zero, as scanpy's normalize_total leaves it
    return np.divide(LOG_TARGET_SUM, totals, out=np.zeros_like(totals), where=totals > 0).astype(np.float32)


def log_normalize(counts: np.ndarray, totals) -> np.ndarray:
    """``log1p`` of dense ``counts`` scaled to ``LOG_TARGET_SUM`` by the cells' ``totals`` (float32, in place)."""
    counts *= _log_scale(totals)
    return np.log1p(counts, out=counts)


def expected_log1p_scaled(rate: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Return E[log1p(scale x Y)] for Y ~ Poisson(rate), elementwise (``scale`` broadcasts, e.g. one per row).

    The expectation is below ``log1p(scale x rate)`` (Jensen) and tends to it as the rate grows. It is read
    as that plug-in value times a ratio tabulated on a log-log grid of rate and scale (bilinear
    interpolation; Poisson sums up to rate 100, a fourth-order expansion above). Rates and scales outside
    the grid take its edges, where the ratio is flat; rate 0 or scale 0 give 0.

    Parameters
    ----------
    rate
        Poisson rates (counts), any shape, non-negative.
    scale
        Multiplier inside the logarithm (e.g. ``1e4 / total count`` of each cell), broadcastable to ``rate``.

    Returns
    -------
    float32 array of ``rate``'s shape.
    """
    log_rate_grid, log_scale_grid, ratio = _log1p_ratio_table()
    rate = np.asarray(rate, dtype=np.float32)
    scale = np.broadcast_to(np.asarray(scale, dtype=np.float32), rate.shape)
    plug_in = np.log1p(scale * rate)
    with np.errstate(divide="ignore"):
        u = _grid_position(np.log(rate), log_rate_grid)
        v = _grid_position(np.log(scale), log_scale_grid)
    i = np.minimum(u.astype(np.int32), log_rate_grid.size - 2)
    j = np.minimum(v.astype(np.int32), log_scale_grid.size - 2)
    u -= i
    v -= j
    r = ratio.astype(np.float32)
    low = r[i, j] + (r[i, j + 1] - r[i, j]) * v
    high = r[i + 1, j] + (r[i + 1, j + 1] - r[i + 1, j]) * v
    plug_in *= low + (high - low) * u
    return plug_in


def _grid_position(x: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Fractional index of ``x`` on the even ``grid``, clipped to it (``-inf`` and NaN to its start)."""
    pos = (x - np.float32(grid[0])) * np.float32((grid.size - 1) / (grid[-1] - grid[0]))
    np.nan_to_num(pos, copy=False, nan=0.0, neginf=0.0)
    return np.clip(pos, 0.0, np.float32(grid.size - 1), out=pos)


#: Largest rate whose ``"lognorm"`` expectation is summed exactly; above it a fourth-order expansion is used.
_EXACT_RATE = 100.0


@functools.cache
def _log1p_ratio_table() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(log rate grid, log scale grid, E[log1p(sY)] / log1p(s rate))`` for Y ~ Poisson(rate)."""
    from scipy.special import gammaln

    log_rate = np.linspace(np.log(1e-6), np.log(1e5), 512)
    log_scale = np.linspace(np.log(1e-4), np.log(1e4), 256)
    lam, s = np.exp(log_rate)[:, None], np.exp(log_scale)[None, :]
    plug_in = np.log1p(s * lam)
    # Taylor expansion of f(y) = log1p(s y) at the rate, with the Poisson central moments
    # m2 = m3 = rate and m4 = 3 rate^2 + rate: E f = f + f2 m2 / 2 + f3 m3 / 6 + f4 m4 / 24
    a = s / (1.0 + s * lam)
    value = plug_in - a**2 * lam / 2 + a**3 * lam / 3 - a**4 * (3 * lam**2 + lam) / 4
    small = log_rate <= np.log(_EXACT_RATE)
    k = np.arange(1, 400, dtype=np.float64)
    pmf = np.exp(k[None, :] * log_rate[small, None] - lam[small] - gammaln(k + 1)[None, :])
    value[small] = pmf @ np.log1p(s[0][None, :] * k[:, None])
    return log_rate, log_scale, value / plug_in


# ------------------------------------------------------------------ the Poisson link
#: Detection probabilities are clipped to [0, 1 - P_MAX_GAP] before the Poisson link (lambda <= 13.8).
P_MAX_GAP = 1e-6
_LAMBDA_GRID = np.geomspace(1e-6, -np.log(P_MAX_GAP), 1024)


@functools.cache
def _poisson_table() -> tuple[np.ndarray, np.ndarray]:
    """``(log lambda, E[log1p X | X > 0])`` for X ~ Poisson(lambda) on ``_LAMBDA_GRID`` (sum over k = 1..200)."""
    from scipy.special import gammaln

    k = np.arange(1, 201, dtype=np.float64)
    lam = _LAMBDA_GRID[:, None]
    pmf = np.exp(k * np.log(lam) - lam - gammaln(k + 1))
    return np.log(_LAMBDA_GRID), (pmf * np.log1p(k)).sum(axis=1) / -np.expm1(-_LAMBDA_GRID)


def poisson_log1p_if_detected(p: np.ndarray) -> np.ndarray:
    """Return the log1p count a gene has when detected, from its detection probability alone (Poisson link).

    With X ~ Poisson(lambda) and P(X > 0) = p, lambda = -log(1 - p); returns E[log1p X | X > 0]
    (``log 2`` as p -> 0, growing with p). p is clipped to ``1 - P_MAX_GAP``; the expectation is read
    from a table on a log-lambda grid (linear interpolation; error below 1e-4).

    Parameters
    ----------
    p
        Detection probabilities, any shape.

    Returns
    -------
    float32 array of the same shape.
    """
    log_grid, table = _poisson_table()
    # float32 working copies: this runs on every predicted chunk, and the dask path bounds its memory
    x = np.array(p, dtype=np.float32)  # a copy, worked on in place
    np.clip(x, 0.0, np.float32(1.0 - P_MAX_GAP), out=x)
    np.negative(x, out=x)
    np.log1p(x, out=x)
    np.negative(x, out=x)  # lambda = -log(1 - p)
    with np.errstate(divide="ignore", invalid="ignore"):
        np.log(x, out=x)  # lambda = 0 -> -inf -> the table's first value (the p -> 0 limit, log 2)
    return _interp_uniform(x, log_grid, table)


def _interp_uniform(x: np.ndarray, grid: np.ndarray, table: np.ndarray) -> np.ndarray:
    """``np.interp(x, grid, table)`` for an evenly spaced ``grid``, in place on float32 ``x``.

    The position on an even grid is arithmetic, not a search: several times faster than ``np.interp``
    on the reads of a prediction. Values outside the grid take the end values, as in ``np.interp``;
    NaN takes the first.
    """
    n = grid.size
    step = (grid[-1] - grid[0]) / (n - 1)
    x -= np.float32(grid[0])
    x *= np.float32(1.0 / step)
    np.nan_to_num(x, copy=False, nan=0.0)
    np.clip(x, 0.0, np.float32(n - 1), out=x)
    i = np.minimum(x.astype(np.int32), n - 2)
    x -= i  # the fraction of the way to the next grid point
    table = table.astype(np.float32)
    x *= np.diff(table)[i]
    x += table[i]
    return x


def value_if_detected(value: np.ndarray, p: np.ndarray, zero_fraction: np.ndarray) -> np.ndarray:
    """Combine the value head with the value implied by the detection head, per gene (log1p scale).

    The value head ``value`` is trained on detected entries only, so for a gene detected in few cells it
    rests on few examples and is noisy; the detection head is trained on every cell, and through a
    Poisson link (:func:`poisson_log1p_if_detected`) its probability ``p`` also implies a detected
    level. That implied level is informative where the gene has zeros and says nothing for a gene
    detected everywhere (p -> 1), so the two are weighted by the gene's zero fraction ``z`` in the
    training cells: ``(1 - z) * value + z * poisson_log1p_if_detected(p)``, a weighting without a tuned
    constant (its measurement: ``benchmarks/RESULTS_accuracy.md``).

    Parameters
    ----------
    value
        Value head output (log1p), cells x genes.
    p
        Detection probabilities, same shape.
    zero_fraction
        Per gene (last axis) fraction of training cells where the gene was zero.

    Returns
    -------
    float32 array (log1p), same shape as ``value``.
    """
    z = np.asarray(zero_fraction, dtype=np.float32)
    out = poisson_log1p_if_detected(p)
    out *= z
    out += (1.0 - z) * np.asarray(value, dtype=np.float32)
    return out
