"""Sphinx configuration for the scdeepimpute documentation.

Build: ``python -m sphinx -W --keep-going -b html docs docs/_build/html`` (from the repository root).

Two things are generated at build time, so that the sources stay in one place:

* the tutorials are copied from ``tutorials/`` into ``docs/tutorials/`` (git-ignored) and rendered from
  their stored outputs (never executed here);
* the API listing (``docs/_api_sections.rst``, git-ignored, included by ``api.md``) is written from the ``__all__`` of
  every public namespace, so a renamed or added public name needs no edit here.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import shutil
import sys
from datetime import datetime
from importlib.metadata import PackageNotFoundError, metadata
from pathlib import Path

HERE = Path(__file__).parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE / "_ext"))
sys.path.insert(0, str(ROOT))  # the package of this checkout, installed or not

import scdeepimpute  # noqa: E402

# -- Project information -----------------------------------------------------
project = "scdeepimpute"
try:
    author = metadata("scdeepimpute")["Author"] or "scdeepimpute developers"
except PackageNotFoundError:  # building from a checkout that was never installed
    author = "scdeepimpute developers"
copyright = f"{datetime.now():%Y}, {author}"
release = version = scdeepimpute.__version__

# -- General configuration ---------------------------------------------------
extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "sphinx_autodoc_typehints",
    "sphinxcontrib.bibtex",
    "cli_help",
]

templates_path = ["_templates"]
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "**.ipynb_checkpoints", "_api_sections.rst"]
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
default_role = "literal"

autosummary_generate = ["api.md", "_api_sections.rst"]
autosummary_ignore_module_all = False  # list what each namespace exports, nothing else
autodoc_member_order = "groupwise"
autoclass_content = "class"
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = True
napoleon_use_param = True
napoleon_custom_sections = [("Sets", "returns_style")]
typehints_defaults = "comma"
always_use_bars_union = True

bibtex_bibfiles = ["references.bib"]
bibtex_reference_style = "author_year"
bibtex_default_style = "plain"

myst_enable_extensions = ["colon_fence", "deflist", "dollarmath", "amsmath"]
myst_heading_anchors = 3
nb_execution_mode = "off"  # tutorials are rendered from the outputs stored in them
nb_merge_streams = True
nb_output_stderr = "remove"  # TensorFlow start-up chatter and progress bars, not results

# Inventories are fetched over the network; a build without one (CI sandboxes) would warn, and
# -W turns that into a failure. Read the Docs has network, so links to the libraries resolve there.
intersphinx_mapping = {}
if os.environ.get("READTHEDOCS") == "True":
    intersphinx_mapping = {
        "python": ("https://docs.python.org/3", None),
        "anndata": ("https://anndata.readthedocs.io/en/stable/", None),
        "scanpy": ("https://scanpy.readthedocs.io/en/stable/", None),
        "numpy": ("https://numpy.org/doc/stable/", None),
        "scipy": ("https://docs.scipy.org/doc/scipy/", None),
        "pandas": ("https://pandas.pydata.org/docs/", None),
        "dask": ("https://docs.dask.org/en/stable/", None),
        "matplotlib": ("https://matplotlib.org/stable/", None),
    }

# -- HTML output ---------------------------------------------------------------
html_theme = "sphinx_book_theme"
html_title = "scdeepimpute"
html_theme_options = {"path_to_docs": "docs/", "show_toc_level": 2}
pygments_style = "default"


# -- Generated sources ---------------------------------------------------------
def _copy_tutorials() -> None:
    dest = HERE / "tutorials"
    dest.mkdir(exist_ok=True)
    wanted = {p.name for p in (ROOT / "tutorials").glob("*.ipynb")}
    for stale in dest.glob("*.ipynb"):
        if stale.name not in wanted:
            stale.unlink()
    for name in sorted(wanted):
        src, dst = ROOT / "tutorials" / name, dest / name
        if not dst.exists() or dst.read_bytes() != src.read_bytes():
            shutil.copyfile(src, dst)


def public_namespaces() -> list[str]:
    """Public subpackages of scdeepimpute: pp, tl, pl, datasets first, then the others (e.g. out-of-core)."""
    found = [m.name for m in pkgutil.iter_modules(scdeepimpute.__path__) if m.ispkg and not m.name.startswith("_")]
    first = [n for n in ("pp", "tl", "pl", "datasets") if n in found]
    return [f"scdeepimpute.{n}" for n in first + sorted(set(found) - set(first))]


SECTION_TITLES = {"pp": "Preprocessing", "tl": "Tools", "pl": "Plotting", "datasets": "Datasets"}


def _section_title(mod) -> str:
    """Scanpy's names for the usual namespaces; any other takes the first line of its docstring."""
    short = mod.__name__.removeprefix("scdeepimpute.")
    first = (mod.__doc__ or short).strip().splitlines()[0].rstrip(".")
    return f"{SECTION_TITLES.get(short, first)} (``{short}``)"


def _write_api_sections() -> None:
    lines = [".. This file is written by docs/conf.py from each namespace's __all__; do not edit.", ""]
    classes = [n for n in scdeepimpute.__all__ if isinstance(getattr(scdeepimpute, n), type)]
    if classes:
        lines += ["Model", "-----", "", ".. currentmodule:: scdeepimpute", "", ".. autosummary::"]
        lines += ["   :toctree: generated", "", *(f"   {c}" for c in classes), ""]
    for modname in public_namespaces():
        mod = importlib.import_module(modname)
        title = _section_title(mod)
        lines += [title, "-" * len(title), "", f".. automodule:: {modname}", "   :no-members:", ""]
        lines += [f".. currentmodule:: {modname}", "", ".. autosummary::", "   :toctree: generated", ""]
        lines += [f"   {name}" for name in mod.__all__]
        lines.append("")
    out = HERE / "_api_sections.rst"
    text = "\n".join(lines)
    if not out.exists() or out.read_text() != text:  # unchanged sources keep incremental builds incremental
        out.write_text(text)


_copy_tutorials()
_write_api_sections()
