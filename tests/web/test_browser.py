"""The web player in a real browser (Debian's chromium, driven by Playwright) against a real daemon.

Without the autoplay flag, so the AudioContext starts from a real click on 'Listen' (the user-gesture
path). The page loads, audio frames arrive and play through the AudioWorklet, the A/B switch crossfades
to the level-matched original and back, a preset change shows a new decision, the album mode control
switches between the album's plan and the track's own, and nothing is logged
as an error. Screenshots (desktop and phone width) go to ``tests/artifacts/``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import require_tool

from tests.web.daemon import Daemon, track_ids

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
LAUNCH_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-gpu"]
WAIT_MS = 45_000


def test_web_player_plays_switches_ab_and_preset(daemon: Daemon) -> None:
    chromium = require_tool("chromium")
    sync_api = pytest.importorskip("playwright.sync_api")
    ids = track_ids(daemon)
    with daemon.control() as control:
        control.call("stop")
        control.call("queue.clear")
        control.call("queue.add", {"track_ids": [ids["crushed.wav"], ids["dynamic.wav"]]})
        control.call("options.set", {"repeat": True})
        control.call("preset.set", {"name": "adaptive"})
    ARTIFACTS.mkdir(exist_ok=True)
    problems: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=LAUNCH_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.goto(daemon.http + "/")
            page.wait_for_selector("#connection[data-state=open]", timeout=WAIT_MS)
            page.wait_for_function("document.querySelectorAll('#preset option').length === 5", timeout=WAIT_MS)
            page.keyboard.press("Space")  # keyboard shortcut: play
            page.click("#listen")  # a real user gesture creates and resumes the AudioContext
            page.wait_for_function("window.auralis.contextState === 'running'", timeout=WAIT_MS)
            page.wait_for_function("window.auralis.framesReceived > 40 && window.auralis.playedOffset > 0",
                                   timeout=WAIT_MS)
            page.wait_for_function("document.querySelector('#decision').textContent.includes('[2D LWRP]')",
                                   timeout=WAIT_MS)
            assert page.locator("#plane-track").count() == 1  # the track's point on the LUFS x crest plane
            assert page.locator("#plane rect[data-region]").count() == 4  # the 2D LWRP regions
            assert page.locator("#bands rect[data-band]").count() == 7  # band balance chart
            assert page.locator("#in-lufs").inner_text() != "—" and page.locator("#out-lufs").inner_text() != "—"
            assert page.locator("#track-title").inner_text() == "crushed"
            # the cover art (cover.png beside the file, from GET /cover/<id>) is shown beside the title
            page.wait_for_function(f"window.auralis.cover === {ids['crushed.wav']}", timeout=WAIT_MS)
            assert page.locator("#cover").is_visible()
            assert page.evaluate("document.querySelector('#cover').naturalWidth") == 8

            # A/B: the level-matched original at the same offsets, reached through a 20 ms crossfade.
            page.wait_for_function("window.auralis.originalFramesReceived > 20", timeout=WAIT_MS)
            page.click("#ab")
            page.wait_for_function("window.auralis.abGain === 1", timeout=WAIT_MS)
            assert page.get_attribute("#ab", "aria-pressed") == "true"
            page.keyboard.press("a")  # keyboard shortcut back to A
            page.wait_for_function("window.auralis.abGain === 0", timeout=WAIT_MS)

            # Preset change through the page: the decision follows.
            before = page.locator("#decision").inner_text()
            page.select_option("#preset", "bright")
            page.wait_for_function(
                "b => { const d = document.querySelector('#decision').textContent; return d !== b && d.includes('[2D LWRP]'); }",
                arg=before, timeout=WAIT_MS)
            page.wait_for_function("window.auralis.status && window.auralis.status.preset === 'bright'", timeout=WAIT_MS)
            frames = page.evaluate("window.auralis.framesReceived")
            page.wait_for_function(f"window.auralis.framesReceived > {frames + 20}", timeout=WAIT_MS)
            assert page.evaluate("window.auralis.sequenceGaps") == 0

            # Album mode through the page: the setting reaches the daemon and the page says which plan plays
            # (the two untagged tracks of the music folder are one album by the folder rule).
            page.select_option("#album-mode", "album")
            page.wait_for_function("window.auralis.status && window.auralis.status.album_mode === 'album'",
                                   timeout=WAIT_MS)
            page.wait_for_function("document.querySelector('#album-scope').textContent.startsWith('Album plan')",
                                   timeout=WAIT_MS)
            page.select_option("#album-mode", "track")
            page.wait_for_function("document.querySelector('#album-scope').textContent.startsWith('Track plan')",
                                   timeout=WAIT_MS)
            page.screenshot(path=str(ARTIFACTS / "web-player.png"), full_page=True)

            # Phone width: one column, nothing wider than the screen.
            phone = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True)
            phone.on("pageerror", lambda e: problems.append(f"phone page error: {e}"))
            phone.goto(daemon.http + "/")
            phone.wait_for_selector("#connection[data-state=open]", timeout=WAIT_MS)
            assert phone.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
            phone.screenshot(path=str(ARTIFACTS / "web-player-phone.png"), full_page=True)
        finally:
            browser.close()
            with daemon.control() as control:
                control.call("stop")
                control.call("options.set", {"repeat": False})
                control.call("preset.set", {"name": "adaptive"})
                control.call("album_mode.set", {"mode": "auto"})
    assert problems == []
