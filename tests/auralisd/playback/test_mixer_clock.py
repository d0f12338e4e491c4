"""The one crossfade and volume ramp, and the clock policy (pure: times are numbers here)."""

from __future__ import annotations

import numpy as np
import pytest

from auralisd.playback import Clock, Crossfade, VolumeRamp, volume_gain


def test_crossfade_starts_on_the_old_side_ends_on_the_new_and_is_the_same_split_in_blocks() -> None:
    old = np.ones((1000, 2), dtype=np.float32)
    new = -np.ones((1000, 2), dtype=np.float32)
    whole = Crossfade(300).mix(old, new)
    fade = Crossfade(300)
    parts = np.concatenate([fade.mix(old[i : i + 128], new[i : i + 128]) for i in range(0, 1000, 128)])
    assert np.array_equal(whole, parts) and fade.done
    assert whole[0, 0] == 1.0 and np.all(whole[300:] == -1.0)
    assert np.max(np.abs(np.diff(whole[:, 0]))) <= 2.0 / 300 + 1e-6  # a ramp, never a step


def test_volume_ramps_over_one_block_then_holds() -> None:
    ramp = VolumeRamp()
    x = np.ones((100, 2), dtype=np.float32)
    assert ramp.apply(x, 1.0) is x  # unity: untouched
    out = ramp.apply(x, volume_gain(50))
    assert out[0, 0] == 1.0 and out[-1, 0] == pytest.approx(0.25 + 0.75 / 100, abs=1e-6)
    assert np.all(ramp.apply(x, 0.25) == np.float32(0.25))
    assert volume_gain(200) == 1.0 and volume_gain(-5) == 0.0


def test_blocks_are_due_at_their_play_time_and_a_stall_restarts_without_a_burst() -> None:
    clock = Clock(1000)
    assert clock.deadline == float("inf")
    clock.start(10.0)
    for i in range(5):
        assert clock.deadline == pytest.approx(10.0 + 0.05 * i)
        clock.sent(clock.deadline, 50)
    assert clock.stall(10.25)  # the epoch had sent audio: an underrun
    assert not clock.stall(10.26)  # still the same stall: counted once
    assert clock.underruns == 1 and clock.deadline == pytest.approx(10.27)  # polls while stalled
    assert clock.recover(11.0)  # data back a while later: due now, then at pace from here
    assert clock.deadline == 11.0
    clock.sent(11.0, 50)
    assert clock.deadline == pytest.approx(11.05)


def test_a_stall_before_the_first_block_of_an_epoch_is_not_an_underrun() -> None:
    clock = Clock(1000)
    clock.start(0.0)
    assert not clock.stall(0.0) and clock.underruns == 0  # preparing, not an underrun
    clock.recover(1.0)
    clock.sent(1.0, 50)
    clock.new_epoch()  # a seek
    assert not clock.stall(1.05) and clock.underruns == 0


def test_a_realtime_session_sends_up_to_its_lead_ahead_and_a_long_pause_does_not_burst() -> None:
    clock = Clock(1000, lead_s=0.5, max_late_s=0.5)
    clock.start(0.0)
    sent = 0
    while clock.due(0.0):  # at the start: 0.5 s of audio at once (it plays from 0.0)
        clock.sent(0.0, 100)
        sent += 100
    assert sent == 600 and clock.deadline == pytest.approx(0.1)  # then at pace, 0.5 s ahead of play
    clock.sent(5.0, 100)  # the process stalled for seconds: start again from now, no burst of 5 s
    assert clock.deadline == pytest.approx(4.5)


def test_a_stall_the_lead_absorbs_keeps_the_schedule_and_only_a_missed_play_time_is_an_underrun() -> None:
    clock = Clock(1000, lead_s=0.5, max_late_s=0.75)  # the shared player with an early listener
    clock.start(0.0)
    while clock.due(0.0):
        clock.sent(0.0, 100)
    assert clock.play_time == pytest.approx(0.6)
    assert not clock.stall(0.1)  # the block plays at 0.6: nobody hears a gap yet
    assert clock.recover(0.4)  # back before its play time: the schedule holds ...
    assert clock.deadline == pytest.approx(0.1) and clock.play_time == pytest.approx(0.6)  # ... and catches up
    while clock.due(0.4):
        clock.sent(0.4, 100)
    assert clock.play_time == pytest.approx(1.0)  # never more than the lead ahead
    assert not clock.stall(0.5)
    assert clock.stall(1.0) and not clock.stall(1.01)  # its play time came: one underrun, counted once
    assert clock.underruns == 1
    assert clock.recover(1.5)  # after the play time: a new schedule from now (the block plays now)
    assert clock.play_time == pytest.approx(1.5)


def test_resuming_goes_on_where_the_audio_sent_ends_never_before() -> None:
    clock = Clock(1000, lead_s=0.5, max_late_s=0.75)
    clock.start(0.0)
    while clock.due(0.0):
        clock.sent(0.0, 100)
    clock.stop()  # paused with 0.6 s sent: listeners still play it until 0.6
    clock.resume(0.2)
    assert clock.play_time == pytest.approx(0.6) and clock.deadline == pytest.approx(0.1)  # no overlap, no pile-up
    clock.stop()
    clock.resume(5.0)  # long after: from now
    assert clock.play_time == pytest.approx(5.0)
