"""DeepImpute's hyperparameters, declared once: their presets, checks, and the keywords that take them.

:class:`Hyperparameters` is the one declaration (type, value in each preset, valid range, doc line).
:func:`takes_hyperparameters` gives :class:`~scdeepimpute.DeepImpute` and :func:`scdeepimpute.pp.deepimpute`
a keyword for each of them, in the signature ``inspect``, Sphinx and IDEs read and in the docstring.
"""

# no ``from __future__ import annotations``: the field types must be objects, for the signatures built from them
import dataclasses
import functools
import inspect
import textwrap
from collections.abc import Callable
from typing import Any, Literal

#: The placeholder in a docstring's "Parameters" section that :func:`takes_hyperparameters` replaces.
DOC_PLACEHOLDER = "{hyperparameters}"


def _param(default: Any, *, paper: Any, valid: Callable[[Any], bool], doc: str):
    """Declare a field of :class:`Hyperparameters`: its value in each preset, its check and its doc line."""
    return dataclasses.field(default=default, metadata={"paper": paper, "valid": valid, "doc": doc})


@dataclasses.dataclass(frozen=True)
class Hyperparameters:
    """Every hyperparameter of DeepImpute, with the ``"default"`` preset's values.

    ``"paper"`` is the published method (Arisdakessian et al. 2019, and the authors' ``MultiNet`` class
    defaults); ``"default"`` is chosen by measurement (``benchmarks/RESULTS_accuracy.md``): it imputes every
    gene with signal and adds a detection head.
    """

    min_vmr: float = _param(
        0.0,
        paper=0.5,
        valid=lambda v: v >= 0,
        doc="Genes with ``var / (1 + mean)`` (counts, ddof=1) above this are imputed.",
    )
    subset_size: int = _param(
        512, paper=512, valid=lambda v: v >= 1, doc="Target genes per sub-network (at most; blocks are evened out)."
    )
    n_predictors: int = _param(
        5, paper=5, valid=lambda v: v >= 1, doc="Input genes taken per target (highest absolute Pearson r)."
    )
    hidden_units: int = _param(256, paper=256, valid=lambda v: v >= 1, doc="Width of the hidden ReLU layer.")
    dropout_rate: float = _param(0.2, paper=0.2, valid=lambda v: 0 <= v < 1, doc="Dropout rate after the hidden layer.")
    learning_rate: float = _param(1e-3, paper=1e-4, valid=lambda v: v > 0, doc="Adam learning rate.")
    batch_size: int = _param(256, paper=64, valid=lambda v: v >= 1, doc="Cells per training step.")
    max_epochs: int = _param(500, paper=500, valid=lambda v: v >= 1, doc="Cap on training epochs.")
    patience: int = _param(
        4,
        paper=5,
        valid=lambda v: v >= 1,
        doc="Early stopping: epochs without improvement of the summed validation loss before training stops.",
    )
    tol: float = _param(
        1e-3,
        paper=0.0,
        valid=lambda v: 0 <= v < 1,
        doc="Early stopping: an epoch counts as an improvement only if it lowers the best summed validation loss "
        "by more than ``tol`` times that loss (relative; 0 = any decrease).",
    )
    epoch_size: int | None = _param(
        10_000,
        paper=None,
        valid=lambda v: v is None or v >= 1,
        doc="Training cells per epoch, the unit of early stopping (validation, ``patience``, best weights): each "
        "epoch takes the next ``epoch_size`` cells of a shuffled pass over the training cells, so on large data "
        "the stopping rule is checked every ``epoch_size`` cells instead of once per pass. With fewer training "
        "cells (or ``None``) an epoch is one pass over all of them.",
    )
    validation_fraction: float = _param(
        0.05, paper=0.05, valid=lambda v: 0 < v < 1, doc="Fraction of (training) cells held out for early stopping."
    )
    restore_best_weights: bool = _param(
        True, paper=False, valid=lambda v: True, doc="Give each block the weights of its best validation epoch."
    )
    detection_head: bool = _param(
        True,
        paper=False,
        valid=lambda v: True,
        doc="Train the second head that predicts detection (needed for ``fill='expected'``).",
    )
    library_size: bool = _param(
        True,
        paper=False,
        valid=lambda v: True,
        doc="Give every block the cell's centred log library size as an extra input.",
    )
    value_loss: Literal["weighted", "nonzero"] = _param(
        "nonzero",
        paper="weighted",
        valid=lambda v: v in ("weighted", "nonzero"),
        doc="``'weighted'``: the paper's ``y * (y - y_hat)^2``; ``'nonzero'``: ``(y - y_hat)^2`` on detected entries.",
    )
    precision: Literal["auto", "float32", "bfloat16"] = _param(
        "auto",
        paper="float32",
        valid=lambda v: v in ("auto", "float32", "bfloat16"),
        doc="``'float32'``, ``'bfloat16'`` for the matrix products (weights, sums, losses and Adam stay float32), "
        "or ``'auto'``: bfloat16 where the hardware multiplies it natively (GPUs of compute capability >= 8, CPUs "
        "with AVX512-BF16 or AMX), float32 elsewhere (emulated bfloat16 is slow). Masked-value accuracy was the "
        "same at both precisions (``benchmarks/RESULTS_speed.md``, bfloat16); results then depend on the hardware, as "
        "floating-point sums do anyway.",
    )

    neighbors: int = _param(
        30,
        paper=0,
        valid=lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
        doc="Cells in each cell's neighbourhood (PCA + exact kNN of the data being imputed) whose Poisson value "
        "if detected is blended with the network's (``fill='detected'``, and through it ``'expected'``); 0: the "
        "network alone. With neighbours, ``fit`` hides a few non-zeros per gene to choose the blend and to "
        "estimate its own accuracy (``calibration_``).",
    )
    neighbor_weight: float | Literal["auto"] = _param(
        "auto",
        paper="auto",
        valid=lambda v: v == "auto" or (isinstance(v, int | float) and not isinstance(v, bool) and 0 <= v <= 1),
        doc="Weight of the neighbourhood in the blend, ``(1 - w) * network + w * neighbourhood`` (log1p): "
        "``'auto'`` chooses it in ``fit`` on the hidden non-zeros (lowest MSE on the grid 0, 0.05, ..., 1), a "
        "number in [0, 1] fixes it.",
    )

    def __post_init__(self):
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not f.metadata["valid"](value):
                msg = f"invalid {f.name}={value!r}."
                raise ValueError(msg)


_FIELDS = dataclasses.fields(Hyperparameters)

#: Names of the hyperparameters, in their declared order.
HYPERPARAMETERS: tuple[str, ...] = tuple(f.name for f in _FIELDS)

#: Hyperparameters of the two presets, ``{preset: {name: value}}``.
PRESETS: dict[str, dict] = {
    "paper": {f.name: f.metadata["paper"] for f in _FIELDS},
    "default": {f.name: f.default for f in _FIELDS},
}


def hyperparameters(preset: str, overrides: dict) -> dict:
    """Return the preset's hyperparameters with the non-``None`` ``overrides``, checked (``ValueError``)."""
    if preset not in PRESETS:
        msg = f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}."
        raise ValueError(msg)
    params = dict(PRESETS[preset])
    params.update({k: v for k, v in overrides.items() if v is not None})
    return dataclasses.asdict(Hyperparameters(**params))


def _parameters_doc(indent: str) -> str:
    lines = []
    for f in _FIELDS:
        default, paper = f.default, f.metadata["paper"]
        presets = (
            f"Preset value: ``{default!r}``."
            if default == paper
            else f"Preset values: ``{default!r}`` (default), ``{paper!r}`` (paper)."
        )
        lines.append(indent + f.name)
        lines.append(
            textwrap.fill(
                f"{f.metadata['doc']} {presets}",
                width=100,
                initial_indent=indent + "    ",
                subsequent_indent=indent + "    ",
                break_on_hyphens=False,
                break_long_words=False,
            )
        )
    return "\n".join(lines)


def _fill_doc(doc: str | None) -> str | None:
    if doc is None or DOC_PLACEHOLDER not in doc:
        msg = f"the docstring must hold a {DOC_PLACEHOLDER} line in its Parameters section."
        raise ValueError(msg)
    for line in doc.splitlines():
        if line.strip() == DOC_PLACEHOLDER:
            indent = line[: len(line) - len(line.lstrip())]
            return doc.replace(line, _parameters_doc(indent), 1)
    msg = f"{DOC_PLACEHOLDER} must stand alone on its line."
    raise ValueError(msg)


def _with_hyperparameters(func: Callable) -> Callable:
    """``func(..., *, preset, ..., **hyperparameters)`` with a keyword-only parameter per hyperparameter."""
    sig = inspect.signature(func)
    params = list(sig.parameters.values())
    if params[-1].kind is not inspect.Parameter.VAR_KEYWORD or "preset" not in sig.parameters:
        msg = f"{func.__qualname__} needs a `preset` keyword and a final `**hyperparameters`."
        raise TypeError(msg)
    annotations = {f.name: f.type | None for f in _FIELDS}
    added = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation)
        for name, annotation in annotations.items()
    ]
    at = [p.name for p in params].index("preset") + 1
    new_sig = sig.replace(parameters=[*params[:at], *added, *params[at:-1]])

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:  # an unknown keyword or a stray positional argument
            new_sig.bind(*args, **kwargs)
        except TypeError as e:
            raise TypeError(f"{func.__qualname__}() {e}") from None
        return func(*args, **kwargs)

    wrapper.__signature__ = new_sig
    wrapper.__annotations__ = {
        **{k: v for k, v in func.__annotations__.items() if k != params[-1].name},
        **annotations,
    }
    return wrapper


def takes_hyperparameters(obj):
    """Give a function, or a class's ``__init__``, one keyword-only parameter per hyperparameter.

    The decorated callable is written ``f(..., *, preset, ..., **hyperparameters)``; it gets the keywords
    (default ``None``: take the preset's value) in its signature, right after ``preset``, and unknown
    keywords raise ``TypeError``. Its docstring's (for a class: the class docstring's)
    ``{hyperparameters}`` line becomes the numpydoc entries of every hyperparameter.
    """
    if isinstance(obj, type):
        obj.__init__ = _with_hyperparameters(obj.__init__)
        obj.__doc__ = _fill_doc(obj.__doc__)
        return obj
    wrapper = _with_hyperparameters(obj)
    wrapper.__doc__ = _fill_doc(obj.__doc__)
    return wrapper
