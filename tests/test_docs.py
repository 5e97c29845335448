"""Documentation: every public name has a docstring with an example, and the site builds without a warning."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest

import scdeepimpute

ROOT = Path(__file__).resolve().parents[1]
# the out-of-core module: found under either name, so the test follows its rename
OUT_OF_CORE = next(
    name for name in ("scdeepimpute.dask", "scdeepimpute.experimental") if importlib.util.find_spec(name) is not None
)
NAMESPACES = [
    "scdeepimpute",
    "scdeepimpute.pp",
    "scdeepimpute.tl",
    "scdeepimpute.pl",
    "scdeepimpute.datasets",
    OUT_OF_CORE,
]


def _public_objects() -> list[tuple[str, object]]:
    """(dotted name, object) for every name in a namespace's ``__all__`` that is a function or class."""
    found = []
    for modname in NAMESPACES:
        mod = importlib.import_module(modname)
        for name in mod.__all__:
            obj = getattr(mod, name)
            if inspect.isfunction(obj) or inspect.isclass(obj):
                found.append((f"{modname}.{name}", obj))
    return found


PUBLIC = _public_objects()


def test_namespaces_cover_the_package():
    # a new public subpackage must be added to NAMESPACES (and is then checked like the others)
    import pkgutil

    subpackages = {f"scdeepimpute.{m.name}" for m in pkgutil.iter_modules(scdeepimpute.__path__) if m.ispkg}
    assert {s for s in subpackages if not s.rsplit(".", 1)[1].startswith("_")} <= set(NAMESPACES)
    assert len(PUBLIC) >= 30  # the walk found the API, not an empty __all__


@pytest.mark.parametrize(("name", "obj"), PUBLIC, ids=[n for n, _ in PUBLIC])
def test_public_name_has_docstring_with_example(name, obj):
    doc = inspect.getdoc(obj) or ""
    assert doc.strip(), f"{name} has no docstring"
    assert "\nExamples\n--------\n" in doc, f"{name}'s docstring has no numpydoc 'Examples' section"
    assert ">>>" in doc.split("\nExamples\n--------\n", 1)[1], f"{name}'s Examples section shows no code"


def _sphinx_available() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("sphinx", "myst_nb", "sphinxcontrib.bibtex"))


@pytest.mark.slow
@pytest.mark.skipif(not _sphinx_available(), reason="needs the doc extra: pip install -e '.[doc]'")
def test_docs_build_without_warnings_and_have_a_page_per_public_name(tmp_path):
    out = tmp_path / "html"
    # a fresh doctree dir, so a cached build elsewhere cannot hide a warning
    cmd = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", "-d", str(tmp_path / "doctrees")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([*cmd, str(ROOT / "docs"), str(out)], capture_output=True, text=True, env=env, cwd=ROOT)
    assert proc.returncode == 0, f"sphinx failed or warned:\n{proc.stderr[-5000:]}"
    missing = []
    for name, _ in PUBLIC:
        # top-level names are documented where users reach them: scdeepimpute.DeepImpute, scdeepimpute.pp.deepimpute
        page = out / "generated" / f"{name}.html"
        if not page.is_file() or f'id="{name}"' not in page.read_text(encoding="utf-8"):
            missing.append(name)
    assert not missing, f"no API page (or no entry on it) for: {missing}"
    for page in ["index", "installation", "api", "cli", "layers", "changelog", "references", "benchmarks/index"]:
        assert (out / f"{page}.html").is_file(), page
    tutorials = sorted(p.stem for p in (ROOT / "tutorials").glob("*.ipynb"))
    assert tutorials
    assert all((out / "tutorials" / f"{t}.html").is_file() for t in tutorials)
    cli = (out / "cli.html").read_text(encoding="utf-8")
    assert "--chunk-size" in cli
    assert "usage: scdeepimpute demo" in cli


def test_every_citation_has_a_bibliography_entry():
    import re

    keys = set(re.findall(r"^@\w+\{([^,]+),", (ROOT / "docs" / "references.bib").read_text(), flags=re.M))
    sources = [*(ROOT / "scdeepimpute").rglob("*.py"), *(ROOT / "docs").glob("*.md")]
    cited = {k for p in sources for k in re.findall(r":cite:[pt]?:?`([^`]+)`", p.read_text(encoding="utf-8"))}
    cited = {k.strip() for group in cited for k in group.split(",")}
    assert cited, "no :cite: found: the pattern is wrong"
    assert cited <= keys, f"cited but not in docs/references.bib: {sorted(cited - keys)}"
