"""Music-like test and demo material, synthesised (we never commit audio files).

``make_music`` builds drums + bass + pads + a little noise, in stereo, deterministic
for a given seed. It is what tests, benchmarks and ``make run``'s demo library use.
Everything is vectorised: events are impulse trains convolved with short kernels.
"""

from __future__ import annotations

import numpy as np
from scipy import signal

from .audio import write_audio


def _impulses(num_frames: int, times_s: np.ndarray, sample_rate: int, gains: np.ndarray | float = 1.0) -> np.ndarray:
    train = np.zeros(num_frames, dtype=np.float64)
    idx = np.round(times_s * sample_rate).astype(np.int64)
    keep = idx < num_frames
    np.add.at(train, idx[keep], np.broadcast_to(gains, idx.shape)[keep])
    return train


def _kick(sample_rate: int) -> np.ndarray:
    t = np.arange(int(0.35 * sample_rate)) / sample_rate
    freq = 45.0 + 90.0 * np.exp(-t * 30.0)
    phase = 2 * np.pi * np.cumsum(freq) / sample_rate
    return np.sin(phase) * np.exp(-t * 9.0)


def _snare(sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(int(0.25 * sample_rate)) / sample_rate
    noise = rng.standard_normal(t.size)
    sos = signal.butter(2, [1500.0, min(9000.0, 0.45 * sample_rate)], btype="band", fs=sample_rate, output="sos")
    body = signal.sosfilt(sos, noise) * 1.5 + 0.6 * np.sin(2 * np.pi * 190.0 * t)
    return body * np.exp(-t * 18.0)


def _hat(sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(int(0.06 * sample_rate)) / sample_rate
    cutoff = min(7000.0, 0.4 * sample_rate)
    sos = signal.butter(2, cutoff, btype="high", fs=sample_rate, output="sos")
    return signal.sosfilt(sos, rng.standard_normal(t.size)) * np.exp(-t * 60.0) * 0.5


def make_music(
    duration_s: float,
    sample_rate: int = 44_100,
    *,
    bpm: float = 120.0,
    seed: int = 0,
    channels: int = 2,
    peak_dbfs: float = -1.0,
) -> np.ndarray:
    """Drums, bass and pads: ``(frames, channels)`` float32 with sample peak ``peak_dbfs``.

    Its crest factor (about 18 dB) and PLR (about 17 dB) resemble a dynamic acoustic-pop master; the kick sits on
    every beat at ``bpm`` so tempo estimators have a ground truth.
    """
    rng = np.random.default_rng(seed)
    n = int(round(duration_s * sample_rate))
    beat_s = 60.0 / bpm
    beats = np.arange(0.0, duration_s, beat_s)
    kick = signal.fftconvolve(_impulses(n, beats, sample_rate), _kick(sample_rate))[:n]
    snare = signal.fftconvolve(_impulses(n, beats[1::2], sample_rate), _snare(sample_rate, rng))[:n]
    hats_t = np.arange(0.0, duration_s, beat_s / 2)
    hats = signal.fftconvolve(
        _impulses(n, hats_t, sample_rate, 0.6 + 0.4 * rng.random(hats_t.size)), _hat(sample_rate, rng)
    )[:n]

    t = np.arange(n) / sample_rate
    # Bass: one note per bar following a i-VI-III-VII progression (A minor), plucked envelope.
    roots_hz = np.array([55.0, 43.65, 65.41, 49.0])
    bar_s = 4 * beat_s
    bar = np.floor(t / bar_s).astype(np.int64)
    bass_f = roots_hz[bar % 4]
    beat_phase = (t % beat_s) / beat_s
    bass_env = np.exp(-beat_phase * 3.0)
    bass = (np.sin(2 * np.pi * np.cumsum(bass_f) / sample_rate) + 0.3 * np.sin(4 * np.pi * np.cumsum(bass_f) / sample_rate)) * bass_env

    # Pads: triads two octaves up, slow attack per bar, detuned left/right for width.
    ratios = np.array([1.0, 1.189, 1.498])  # minor triad
    pad_l = np.zeros(n)
    pad_r = np.zeros(n)
    for ratio in ratios:  # three partials, each a whole-array operation
        f = bass_f * 4 * ratio
        pad_l += np.sin(2 * np.pi * np.cumsum(f * 1.002) / sample_rate)
        pad_r += np.sin(2 * np.pi * np.cumsum(f * 0.998) / sample_rate + 0.7)
    bar_phase = (t % bar_s) / bar_s
    pad_env = np.minimum(1.0, bar_phase * 6.0) * (1.0 - 0.4 * bar_phase)

    mid = 0.55 * kick + 0.35 * snare + 0.5 * bass
    left = mid + 0.20 * hats + 0.2 * pad_l * pad_env
    right = mid + 0.14 * np.roll(hats, int(0.0003 * sample_rate)) + 0.2 * pad_r * pad_env
    out = np.stack([left, right], axis=1)
    if channels == 1:
        out = out.mean(axis=1, keepdims=True)
    elif channels > 2:
        extra = np.repeat(out.mean(axis=1, keepdims=True) * 0.5, channels - 2, axis=1)
        out = np.concatenate([out, extra], axis=1)
    peak = np.max(np.abs(out))
    if peak > 0:
        out *= 10 ** (peak_dbfs / 20) / peak
    return out.astype(np.float32)


def in_layout(stereo: np.ndarray, channels: int, sample_rate: int) -> np.ndarray:
    """The same programme as ``stereo`` in a ``channels``-channel layout (:mod:`auralis.downmix`'s orders).

    Mono is the mono version ``(L + R) / 2``. For 3-8 channels the centre carries part of the
    mid, the surrounds delayed copies of their side (room), the LFE the low end; the front pair
    is then solved so that :func:`~auralis.downmix.stereo_downmix` gives back ``stereo`` (to
    float32 rounding): a listener hears the same music from every layout, and the LFE is there
    only to show that it is dropped.

    Args:
        stereo: float ``(frames, 2)``.
        channels: 1 to 8.
        sample_rate: Hz (sets the delays and the LFE's crossover).

    Returns:
        float32 ``(frames, channels)``.
    """
    from .downmix import channel_layout

    x = np.asarray(stereo, dtype=np.float64)
    if channels == 1:
        return x.mean(axis=1, keepdims=True).astype(np.float32)
    if channels == 2:
        return x.astype(np.float32)
    left, right = x[:, 0], x[:, 1]
    mid = 0.5 * (left + right)

    def delayed(v: np.ndarray, delay_s: float) -> np.ndarray:
        d = int(round(delay_s * sample_rate))
        return np.concatenate([np.zeros(d), v[: v.size - d]]) if d else v

    lfe = signal.sosfilt(signal.butter(4, 120.0, fs=sample_rate, output="sos"), mid)
    content = {
        "FC": 0.5 * mid,
        "LFE": 0.8 * lfe,
        "BL": 0.35 * delayed(left, 0.017), "BR": 0.35 * delayed(right, 0.019),
        "SL": 0.3 * delayed(left, 0.011), "SR": 0.3 * delayed(right, 0.013),
        "BC": 0.3 * delayed(mid, 0.023),
    }  # fmt: skip
    layout = channel_layout(channels)
    out = np.zeros((x.shape[0], channels))
    rest_left, rest_right = np.zeros_like(left), np.zeros_like(right)
    for index, label in enumerate(layout.channels):
        if label in content:
            out[:, index] = content[label]
            rest_left += layout.left[index] * content[label]
            rest_right += layout.right[index] * content[label]
    out[:, layout.channels.index("FL")] = left - rest_left
    out[:, layout.channels.index("FR")] = right - rest_right
    return out.astype(np.float32)


def loudness_war(samples: np.ndarray, drive_db: float = 14.0, ceiling_dbfs: float = -0.3) -> np.ndarray:
    """A crushed, loudness-war version: heavy drive into a fast limiter plus soft clipping."""
    x = samples.astype(np.float64) * 10 ** (drive_db / 20)
    y = np.tanh(x)  # soft clip: flattens the crest like a brickwall master
    y *= 10 ** (ceiling_dbfs / 20) / max(np.max(np.abs(y)), 1e-12)
    return y.astype(np.float32)


def write_demo_library(folder: str, *, duration_s: float = 30.0, sample_rate: int = 44_100) -> list[str]:
    """Write a small library of generated tracks (FLAC) into ``folder``; returns the paths."""
    import os

    os.makedirs(folder, exist_ok=True)
    specs = [
        ("01 - Dynamic Groove.flac", make_music(duration_s, sample_rate, bpm=120, seed=1)),
        ("02 - Loudness War.flac", loudness_war(make_music(duration_s, sample_rate, bpm=128, seed=2))),
        ("03 - Quiet Evening.flac", make_music(duration_s, sample_rate, bpm=96, seed=3, peak_dbfs=-14.0)),
    ]
    paths = []
    for name, audio in specs:
        path = os.path.join(folder, name)
        if not os.path.exists(path):
            write_audio(path, audio, sample_rate)
        paths.append(path)
    return paths
