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


def resample_reference(x: np.ndarray, in_rate: int, out_rate: int) -> np.ndarray:
    """One pass of ``scipy.signal.resample_poly`` over ``x`` (frames on axis 0) with auralis's resampling filter.

    The independent reference for every resampled output (renders, /stream, Snapcast, Opus): the
    same filter (``auralis.resample.design_filter``), scipy's polyphase convolution, float64.
    """
    from auralis.resample import design_filter

    g = int(np.gcd(int(in_rate), int(out_rate)))
    window = design_filter(int(in_rate), int(out_rate))
    return signal.resample_poly(np.asarray(x, dtype=np.float64), out_rate // g, in_rate // g, axis=0, window=window)
