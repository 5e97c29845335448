"""Which genes each block reads and predicts, and the batches of log1p counts the network gets (numpy only)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import sparse

from ._utils import dense_rows


@dataclass
class BlockLayout:
    """Column layout of a batch and which columns each block reads and predicts.

    A batch holds the log1p counts of ``columns`` (sorted gene indices), then ``n_extra`` per-cell
    covariates read by every block (the centred log library size), then one zero column that
    padded slots point to.
    """

    columns: np.ndarray
    inputs: np.ndarray  # (blocks, max inputs) positions in a batch row; padding = ``pad``
    outputs: np.ndarray  # (blocks, max targets) positions in a batch row; padding = ``pad``
    n_extra: int = 0
    n_inputs: np.ndarray = field(init=False)
    n_outputs: np.ndarray = field(init=False)

    def __post_init__(self):
        self.n_inputs = (self.inputs != self.pad).sum(axis=1)
        self.n_outputs = (self.outputs != self.pad).sum(axis=1)

    @property
    def pad(self) -> int:
        """Position of the all-zero padding column."""
        return len(self.columns) + self.n_extra

    @property
    def width(self) -> int:
        """Columns of a batch row."""
        return self.pad + 1

    @classmethod
    def from_blocks(cls, blocks: list[np.ndarray], predictors: list[np.ndarray], *, n_extra: int = 0) -> BlockLayout:
        columns = np.unique(np.concatenate([*blocks, *predictors]))
        pad = len(columns) + n_extra
        extra = np.arange(len(columns), pad)

        def padded(lists):
            width = max(len(x) for x in lists)
            out = np.full((len(lists), width), pad, dtype=np.int32)
            for k, x in enumerate(lists):
                out[k, : len(x)] = x
            return out

        inputs = padded([np.concatenate([np.searchsorted(columns, q), extra]) for q in predictors])
        outputs = padded([np.searchsorted(columns, b) for b in blocks])
        return cls(columns=columns, inputs=inputs, outputs=outputs, n_extra=n_extra)


def log_library(X) -> np.ndarray:
    """log1p of each cell's total count (float64)."""
    return np.log1p(np.asarray(X.sum(axis=1), dtype=np.float64).ravel())


def batch_loader(X, layout: BlockLayout, covariates: np.ndarray | None):
    """Return a function ``rows -> batch`` for the training loop: the :func:`batch` of ``X[rows]``.

    Only the requested rows are logged and densified, so training holds no copy of the input
    (``benchmarks/RESULTS_speed.md``, memory).
    """
    if sparse.issparse(X):
        X = X.tocsr()  # row slicing

    def load(rows):
        raw = X[rows] if sparse.issparse(X) else dense_rows(X, rows)
        return batch(raw, layout, None if covariates is None else covariates[rows])

    return load


def batch(raw, layout: BlockLayout, covariates: np.ndarray | None) -> np.ndarray:
    """One batch for the network from counts of every gene: log1p of ``layout.columns``, covariates, zeros.

    ``raw`` is dense, or CSR (densified straight into the batch: no dense copy of its rows).
    """
    n_cols = layout.columns.size
    out = np.empty((raw.shape[0], layout.width), dtype=np.float32)
    # columns are sorted and unique, so as many columns as genes means every gene, in order: no gathered copy
    sub = raw if n_cols == raw.shape[1] else raw[:, layout.columns]
    if sparse.issparse(sub):
        # the rows' CSR, widened to the batch's width, fills the whole batch (toarray zeroes ``out`` first)
        logged = sparse.csr_matrix((np.log1p(sub.data, dtype=np.float32), sub.indices, sub.indptr), shape=out.shape)
        logged.toarray(out=out)
    else:
        np.log1p(sub, out=out[:, :n_cols])
        out[:, n_cols:] = 0.0
    if covariates is not None:
        out[:, n_cols : layout.pad] = covariates
    return out
