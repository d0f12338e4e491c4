"""Draw the 2D LWRP plane (integrated loudness x crest factor) with its four regions: docs/lwrp_plane.png.

Run ``.venv/bin/python docs/plot_lwrp.py`` (needs the ``docs`` extra: matplotlib). The regions are
computed by calling :func:`auralis.plan.plan_mastering` on a grid, so the picture is the code's
truth, not a drawing of it; example tracks (the synthesised test material) are placed on it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402

from auralis.plan import BAND_KEYS, LWRP_CREST_DB, LWRP_LOUD_LUFS, REFERENCE_BAND_BALANCE, plan_mastering  # noqa: E402
from auralis.presets import get_preset  # noqa: E402

REGIONS = ("quiet", "normal", "dynamic_loud", "compressed_loud")
COLOURS = ("#9ecae1", "#c7e9c0", "#fdd0a2", "#fc9272")
OUT = Path(__file__).resolve().parent / "lwrp_plane.png"


def region_grid(preset: str, lufs: np.ndarray, crest: np.ndarray) -> np.ndarray:
    bands = dict(zip(BAND_KEYS, REFERENCE_BAND_BALANCE, strict=True))
    grid = np.zeros((crest.size, lufs.size))
    for i, c in enumerate(crest):
        for j, lv in enumerate(lufs):
            plan = plan_mastering({"lufs": lv, "crest_db": c, **bands}, preset, 1.0)
            grid[i, j] = REGIONS.index(plan.region)
    return grid


def main() -> int:
    preset = sys.argv[1] if len(sys.argv) > 1 else "adaptive"
    target = get_preset(preset).target_lufs
    lufs = np.linspace(-30.0, -3.0, 271)
    crest = np.linspace(4.0, 24.0, 201)
    grid = region_grid(preset, lufs, crest)
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=100)
    ax.pcolormesh(lufs, crest, grid, cmap=ListedColormap(COLOURS), vmin=-0.5, vmax=3.5, shading="nearest")
    ax.axvline(LWRP_LOUD_LUFS, color="k", lw=1)
    ax.axhline(LWRP_CREST_DB, xmin=(LWRP_LOUD_LUFS - lufs[0]) / (lufs[-1] - lufs[0]), color="k", lw=1)
    ax.axvline(target - 1.0, color="k", lw=0.8, ls="--")
    labels = {
        "quiet": (-24.0, 20.0, "quiet\ngain T - L (<= +20 dB)\ngentle compression"),
        "normal": (target - 0.45, 20.0, "normal"),
        "dynamic_loud": (-7.5, 19.0, "dynamic loud\nno dynamics\ngain min(T-L, -1.5-TP)"),
        "compressed_loud": (-7.5, 10.5, "compressed loud\nupward transient expansion\nclamp((13-C)/10, .1, .5)\ngain <= 0"),
    }
    for x, y, text in labels.values():
        ax.text(x, y, text, ha="center", va="center", fontsize=7.5)
    examples = {"make_music": (-16.8, 17.8, 4), "loudness_war": (-5.7, 8.1, -62), "quiet (-25 LUFS)": (-25.0, 17.8, 4)}
    for name, (lv, c, dx) in examples.items():
        ax.plot(lv, c, "ko", ms=4)
        ax.annotate(name, (lv, c), textcoords="offset points", xytext=(dx, -11), fontsize=7)
    ax.set_xlabel("integrated loudness L (LUFS, BS.1770)")
    ax.set_ylabel("crest factor C (dB)")
    ax.set_title(f"2D LWRP regions (preset {preset}: T = {target:.0f} LUFS; dashed: T - 1)", fontsize=9)
    fig.tight_layout()
    fig.savefig(OUT, dpi=100, metadata={"Software": None})
    print(f"wrote {OUT} ({OUT.stat().st_size // 1024} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
