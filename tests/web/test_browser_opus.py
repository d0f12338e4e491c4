"""The web player on ``?format=opus`` in Debian's chromium (Playwright) against a real daemon.

The page feature-detects WebCodecs' ``AudioDecoder`` and picks Opus; it plays with no underrun of its
AudioWorklet's jitter buffer (the page's underrun counter) through a seek and A/B switches, shows the
format and bandwidth, and a browser without ``AudioDecoder`` falls back to float32 PCM. The measured
bandwidth per listener is printed (docs/benchmarks.md, "Opus on the WebSocket").
"""

from __future__ import annotations

import pytest
from helpers import require_tool

from tests.web.daemon import Daemon, track_ids

LAUNCH_ARGS = ["--no-sandbox", "--autoplay-policy=no-user-gesture-required", "--disable-background-networking",
               "--disable-gpu"]
WAIT_MS = 60_000
RATE = 48_000  # an Opus stream counts 48 kHz frames


def test_web_player_plays_opus_through_seek_and_ab_and_falls_back_to_pcm(daemon: Daemon) -> None:
    chromium = require_tool("chromium")
    sync_api = pytest.importorskip("playwright.sync_api")
    ids = track_ids(daemon)
    with daemon.control() as control:
        control.call("stop")
        control.call("queue.clear")
        control.call("queue.add", {"track_ids": [ids["dynamic.wav"], ids["crushed.wav"]]})
        control.call("options.set", {"repeat": True})
        control.call("play", {"pos": 0})
    problems: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=LAUNCH_ARGS)
        try:
            page = browser.new_page()
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.goto(daemon.http + "/")
            page.wait_for_function("window.auralis.format !== null", timeout=WAIT_MS)
            assert page.evaluate("window.auralis.format") == "opus"  # chromium has WebCodecs' AudioDecoder
            page.click("#listen")
            page.wait_for_function("window.auralis.contextState === 'running'", timeout=WAIT_MS)
            page.wait_for_function(f"window.auralis.playedOffset > {RATE} && window.auralis.sampleRate === {RATE}",
                                   timeout=WAIT_MS)
            underruns = page.evaluate("window.auralis.underruns")

            # Plays on: 4 s of audio through the worklet with no underrun.
            start = page.evaluate("window.auralis.playedOffset")
            page.wait_for_function(f"window.auralis.playedOffset > {start + 4 * RATE}", timeout=WAIT_MS)
            page.wait_for_function("window.auralis.kbps !== null", timeout=WAIT_MS)
            kbps = page.evaluate("window.auralis.kbps")
            assert page.locator("#stream-format").inner_text().startswith("Opus")

            # A/B: the level-matched original (its own shared Opus stream) at the same offsets.
            page.wait_for_function("window.auralis.originalFramesReceived > 20", timeout=WAIT_MS)
            page.click("#ab")
            page.wait_for_function("window.auralis.abGain === 1", timeout=WAIT_MS)
            page.keyboard.press("a")
            page.wait_for_function("window.auralis.abGain === 0", timeout=WAIT_MS)

            # Seek: a new Opus stream (decoder reset) at the new position, and playback goes on from there.
            resets = page.evaluate("window.auralis.opusResets")
            with daemon.control() as control:
                control.call("seek", {"position_s": 6.0})
            page.wait_for_function(f"window.auralis.opusResets > {resets}", timeout=WAIT_MS)
            page.wait_for_function(f"window.auralis.playedOffset > {7 * RATE} && window.auralis.playedOffset < {11 * RATE}",
                                   timeout=WAIT_MS)
            page.click("#ab")  # A/B after the seek too
            page.wait_for_function("window.auralis.abGain === 1", timeout=WAIT_MS)
            page.click("#ab")
            page.wait_for_function("window.auralis.abGain === 0", timeout=WAIT_MS)
            assert page.evaluate("window.auralis.underruns") == underruns, "the Opus stream ran dry"
            assert page.evaluate("window.auralis.sequenceGaps") == 0
            print(f"\nOpus in chromium: {kbps:.1f} kbit/s per listener (mastered stream, 5 s window)")
            assert kbps < 200  # issue 13's goal, against 2822 kbit/s for f32 at 44.1 kHz

            # Without WebCodecs the page falls back to float32 PCM, and plays.
            old = browser.new_page()
            old.add_init_script("delete window.AudioDecoder;")
            old.on("pageerror", lambda e: problems.append(f"fallback page error: {e}"))
            old.goto(daemon.http + "/")
            old.wait_for_function("window.auralis.format !== null", timeout=WAIT_MS)
            assert old.evaluate("window.auralis.format") == "f32"
            old.click("#listen")
            old.wait_for_function("window.auralis.framesReceived > 20 && window.auralis.playedOffset > 0",
                                  timeout=WAIT_MS)
            old.wait_for_function("window.auralis.kbps !== null && window.auralis.kbps > 2000", timeout=WAIT_MS)
            assert old.locator("#stream-format").inner_text().startswith("PCM f32")
        finally:
            browser.close()
            with daemon.control() as control:
                control.call("stop")
                control.call("options.set", {"repeat": False})
    assert problems == []
