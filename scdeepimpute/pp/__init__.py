"""Preprocessing: imputation of raw counts."""

from __future__ import annotations

from .._impute import deepimpute

__all__ = ["deepimpute"]
