"""Shared test helpers."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
from scipy import signal


def require_tool(name: str) -> str:
    """Path of an external tool; skip when it is missing locally, fail in CI (``CI=true``)."""
    path = shutil.which(name)
    if path:
        return path
    if os.environ.get("CI") == "true":
        pytest.fail(f"{name} is required in CI but is not installed (.ci/run should apt-get it)")
    pytest.skip(f"{name} not installed")


def true_peak_8x(x: np.ndarray) -> float:
    """dBTP at 8x oversampling: independent of the limiter's own detector, and finer than BS.1770's 4x."""
    up = signal.resample_poly(np.asarray(x, dtype=np.float64), 8, 1, axis=0)
    return float(20 * np.log10(max(np.max(np.abs(up)), 1e-20)))
