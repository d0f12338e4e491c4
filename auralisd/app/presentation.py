"""Presentation: how the daemon shows a mastering decision (the ``lwrp_decision`` event).

The one place the server states the LWRP region rule (``clients/web/app.js`` draws the same
regions from the ``regions`` field it is sent).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


def lwrp_regions(target_lufs: float) -> list[dict[str, Any]]:
    """The 2D LWRP regions on the LUFS x crest plane for a preset target (from auralis.plan's thresholds)."""
    from auralis.plan import LWRP_CREST_DB, LWRP_LOUD_LUFS, QUIET_MARGIN_LU

    quiet_below = min(target_lufs - QUIET_MARGIN_LU, LWRP_LOUD_LUFS)  # same rule in clients/web/app.js
    return [
        {"name": "quiet", "lufs": [-70.0, quiet_below], "crest_db": [0.0, 40.0]},
        {"name": "normal", "lufs": [quiet_below, LWRP_LOUD_LUFS], "crest_db": [0.0, 40.0]},
        {"name": "dynamic_loud", "lufs": [LWRP_LOUD_LUFS, 0.0], "crest_db": [LWRP_CREST_DB, 40.0]},
        {"name": "compressed_loud", "lufs": [LWRP_LOUD_LUFS, 0.0], "crest_db": [0.0, LWRP_CREST_DB]},
    ]


def decision_event(track_wire: dict[str, Any], plan: Any, inputs: Any = None) -> dict[str, Any]:
    """Fields of ``lwrp_decision``: the line, the numbers, the regions, band balance and measurements."""
    fields: dict[str, Any] = {
        "track_id": track_wire.get("track_id"),
        "decision": plan.decision,
        "region": plan.region,
        "input_lufs": plan.input_lufs,
        "input_crest_db": plan.input_crest_db,
        "output_lufs": plan.target_lufs,
        "target_lufs": plan.preset_target_lufs,
        "gain_db": plan.gain_db,
        "expansion_factor": plan.expansion_factor,
        "bound_hit": plan.bound_hit,
        "preset": plan.preset,
        "intensity": plan.intensity,
        "regions": lwrp_regions(plan.preset_target_lufs),
        "plan": plan.to_dict(),
    }
    if inputs is not None:
        fields.update(fingerprint_summary(inputs))
    return fields


def fingerprint_summary(inputs: Any) -> dict[str, Any]:
    """``bands`` (the seven band fractions) and ``measurements`` (plus ``crest_db``) of plan inputs."""
    dims = getattr(inputs, "dimensions", None) or {}
    measurements = dict(getattr(inputs, "measurements", None) or {})
    if "crest_db" in dims:
        measurements["crest_db"] = dims["crest_db"]
    return {"bands": {k: v for k, v in dims.items() if k.endswith("_pct")}, "measurements": measurements}


@dataclass
class StreamCounters:
    """Live counts of the WebSocket audio peers, kept by the transport and shown in ``status.streams``."""

    private_sessions: int = 0  # /session peers being served
    listeners: int = 0  # /stream listeners being served
    listeners_dropped: int = 0  # /stream listeners closed for falling behind, since start

    def to_wire(self) -> dict[str, int]:
        return {"private_sessions": self.private_sessions, "listeners": self.listeners,
                "listeners_dropped": self.listeners_dropped}
