"""Datasets: the bundled example and a Splatter-style simulator."""

from __future__ import annotations

from ._example import example
from ._simulate import simulate

__all__ = ["example", "simulate"]
