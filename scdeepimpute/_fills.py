"""What fills a zero: fills and policies, the layer of each fill, and the heads' numpy post-processing.

The post-processing turns the network's two heads into counts through a Poisson link.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Literal

import numpy as np

#: What fills a zero: ``"expected"`` = P(detected) x value-if-detected, ``"detected"`` = value-if-detected.
Fill = Literal["expected", "detected"]
#: Which entries of a target gene get the model's value: zeros only, all, or the larger of observed and model.
Policy = Literal["restore", "all", "max"]

FILLS: tuple[str, ...] = ("expected", "detected")
POLICIES: tuple[str, ...] = ("restore", "all", "max")


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
            msg = f"unknown fill {f!r}; use 'expected' or 'detected'."
            raise ValueError(msg)
        if f == "expected" and not detection_head:
            msg = "fill='expected' needs a model trained with detection_head=True; use fill='detected'."
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
) -> None:
    """Write every fill of one chunk of cells into ``out[fill]`` (views of the output's rows).

    ``raw`` holds the chunk's counts (dense, every gene); ``value`` (log1p) and ``prob`` the heads' outputs for
    ``target_genes``, one column each; non-target genes keep their counts. ``neighbourhood`` (log1p, same shape
    as ``value``) is blended into the value if detected with ``weight``.
    """
    log_detected = detected_log1p(value, prob, zero_fraction=zero_fraction, log_max=log_max)
    if neighbourhood is not None and weight > 0:
        from ._neighbors import blend_values

        log_detected = blend_values(log_detected, neighbourhood.astype(np.float32, copy=False), weight)
    detected = np.expm1(log_detected)
    observed = raw[:, target_genes]
    for f, block in out.items():
        # "expected" = P(detected) x value-if-detected, so it never exceeds the "detected" fill
        estimate = detected if f == "detected" else prob * detected
        if policy == "restore":
            estimate = np.where(observed > 0, observed, estimate)
        elif policy == "max":
            estimate = np.maximum(observed, estimate)
        block[:] = raw  # a view: written in place, no per-fill copy of the chunk
        block[:, target_genes] = estimate


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
