"""Datasets: the bundled example and a Splatter-style simulator."""

from __future__ import annotations

from ._example import example
from ._simulate import simulate, simulate_chunks

__all__ = ["example", "simulate", "simulate_chunks"]
