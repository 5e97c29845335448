"""Execute tutorials in place, keeping their outputs: ``python tutorials/execute.py [NAME ...]``.

Set ``SCDEEPIMPUTE_TUTORIAL_FAST=1`` for the quick mode CI uses.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import nbclient
import nbformat

here = Path(__file__).resolve().parent
names = sys.argv[1:] or sorted(p.name for p in here.glob("*.ipynb"))
for name in names:
    path = here / name
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    nbclient.NotebookClient(
        nb, timeout=1800, kernel_name="python3", resources={"metadata": {"path": str(here)}}
    ).execute()
    nbformat.write(nb, path)
    print(f"{name}: {time.perf_counter() - start:.0f} s")
