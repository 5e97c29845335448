"""Every kept benchmark script runs in its ``--quick`` mode, so that CI sees them break."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
SHARED = ROOT.parent / "shared" / "data"


def _supports_quick(script: str) -> bool:
    text = (BENCH / script).read_text()
    return "--quick" in text or "C.parser(" in text  # _common.parser adds --quick


def _case(script, args, header, *, shared=False, old_quick=None):
    marks = [pytest.mark.skipif(not _supports_quick(script), reason=f"{script} has no --quick mode yet")]
    if old_quick is not None:  # a --quick that predates the tiny one: too long for CI, and it writes RESULTS
        old = old_quick in (BENCH / script).read_text()
        marks.append(pytest.mark.skipif(old, reason=f"{script}'s --quick is still the long one ({old_quick!r})"))
    if shared:
        marks.append(pytest.mark.skipif(not SHARED.exists(), reason="needs ../shared/data"))
    return pytest.param(script, args, header, marks=marks, id=script)


#: (script, arguments after --quick, a regular expression the printed table's header must match)
CASES = [
    _case("sweep.py", [], r"\| dataset \| learning_rate \| seed \| fit s \| epochs \| MSE detected \|"),
    _case("profiler.py", [], r"\| phase \| wall s \| peak RSS MB \| RSS after MB \|"),
    _case("million.py", [], r"\| cells \| non-zero \| training cells \| epochs \| fit s \|"),
    _case("fit_impute_timing.py", ["default"], r"default  300x\d+  fit [\d.]+ s  impute [\d.]+ s  val_loss [\d.]+"),
    _case("paper.py", ["--skip-fig2"], r"## Fig\. 5.*\n.*ari +ami +fmi +silhouette +de_auc"),
    _case("paper.py", ["--skip-fig5"], r"### mouse1m_10k: 200 cells.*\n +mse +pearson", shared=True),
    _case("accuracy.py", [], r"\| dataset \| depth \| scheme \|", shared=True),
    _case("reliability.py", [], r"\| dataset \| scheme \| cells x genes \| genes scored \|", shared=True),
    _case("speed.py", [], r"\| [^|\n]+ \|", old_quick="cap training at 3 epochs"),
    _case("batches.py", [], r"\| layer \| cell-line ARI \| silhouette \(cell line\) \| batch ASW", shared=True),
]


@pytest.mark.slow
@pytest.mark.parametrize(("script", "args", "header"), CASES)
def test_quick_mode(script, args, header, tmp_path):
    env = {**os.environ, "SDI_BENCH_CACHE": str(tmp_path), "TF_CPP_MIN_LOG_LEVEL": "3"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    cmd = [sys.executable, str(BENCH / script), "--quick", *args]
    if script == "paper.py":
        cmd += ["--figdir", str(tmp_path)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    match = re.search(header, proc.stdout)
    assert match, proc.stdout[-3000:]
    if header.startswith(r"\|"):  # a markdown table: a separator and at least one row under the header
        after = proc.stdout[match.start() :].splitlines()
        assert re.fullmatch(r"\|(---\|)+", after[1]), after[:3]
        assert len(after) > 2, after
        assert after[2].startswith("|"), after[:3]
        assert after[2].count("|") == after[0].count("|"), after[:3]
