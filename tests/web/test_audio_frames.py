"""The WebSocket audio wire format: header layout, f32 / s16 round trips, TPDF dither, events, commands."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from auralisd.protocol.audio_frames import (
    HEADER_BYTES,
    AudioFramer,
    FrameError,
    decode_audio_frame,
    encode_audio_frame,
    event_message,
    frames_per_message,
    parse_session_command,
    tpdf_quantize_s16,
)


def _music(num_frames: int = 2205, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((num_frames, 2)) * 0.2).astype(np.float32)


def test_header_is_16_bytes_little_endian() -> None:
    x = _music(3)
    data = encode_audio_frame(7, 3, 2**40 + 5, x)
    assert HEADER_BYTES == 16 and len(data) == 16 + 3 * 2 * 4
    assert data[:16] == struct.pack("<IIQ", 7, 3, 2**40 + 5)
    assert data[16:20] == struct.pack("<f", x[0, 0])  # interleaved: L0, R0, L1, ...
    assert data[20:24] == struct.pack("<f", x[0, 1])


def test_f32_round_trip_is_exact() -> None:
    x = _music()
    frame = decode_audio_frame(encode_audio_frame(1, 2, 3, x), channels=2)
    assert (frame.stream_epoch, frame.sequence, frame.offset_frames, frame.num_frames) == (1, 2, 3, x.shape[0])
    np.testing.assert_array_equal(frame.samples, x)


def test_s16_tpdf_dither_is_unbiased_and_within_one_lsb() -> None:
    x = _music(44100)
    rng = np.random.default_rng(0)
    frame = decode_audio_frame(encode_audio_frame(0, 0, 0, x, "s16", rng=rng), channels=2, fmt="s16")
    error_lsb = (frame.samples.astype(np.float64) - x) * 32768
    assert np.abs(error_lsb).max() <= 1.5 + 1e-9  # TPDF (+-1 LSB) plus rounding (+-0.5 LSB)
    assert abs(error_lsb.mean()) < 0.02  # no bias
    # TPDF total error variance is 1/4 LSB^2 (1/6 dither + 1/12 rounding); plain rounding would be 1/12.
    assert 0.2 < error_lsb.var() < 0.3
    # A -100 dBFS tone (a third of an LSB) survives as its average, it is not truncated to silence.
    tone = (1e-5 * np.sin(np.linspace(0, 400 * np.pi, 200_000)))[:, None].astype(np.float32)
    q = tpdf_quantize_s16(np.repeat(tone, 1, axis=1), np.random.default_rng(1)).astype(np.float64) / 32768
    assert np.corrcoef(q[:, 0], tone[:, 0])[0, 1] > 0.25
    assert tpdf_quantize_s16(np.array([[1.0, -1.0]]), rng).tolist() == [[32767, -32768]]  # clipped, no wrap
    beyond = tpdf_quantize_s16(np.array([[4.0, -4.0], [np.inf, -np.inf], [np.nan, np.nan]]), rng)
    assert beyond[:2].tolist() == [[32767, -32768]] * 2 and np.abs(beyond[2]).max() <= 1  # NaN is silence


def test_decode_rejects_malformed_frames() -> None:
    with pytest.raises(FrameError):
        decode_audio_frame(b"\x00" * 10, channels=2)
    with pytest.raises(FrameError):
        decode_audio_frame(b"\x00" * 16 + b"\x00" * 6, channels=2)  # not whole stereo f32 frames
    with pytest.raises(FrameError):
        decode_audio_frame(b"\x00" * 16, channels=2, fmt="f64")


def test_framer_cuts_blocks_with_continuous_sequence_and_offsets() -> None:
    sample_rate = 44100
    framer = AudioFramer(sample_rate)
    assert frames_per_message(sample_rate) == 2205  # 50 ms
    block = _music(10_000)
    out = [decode_audio_frame(m, 2) for m in framer.frames(0, 1000, block)]
    out += [decode_audio_frame(m, 2) for m in framer.frames(0, 11_000, block[:500])]
    assert [f.sequence for f in out] == list(range(len(out)))
    assert [f.offset_frames for f in out] == [1000, 3205, 5410, 7615, 9820, 11_000]
    np.testing.assert_array_equal(np.concatenate([f.samples for f in out[:5]]), block)
    new_epoch = [decode_audio_frame(m, 2) for m in framer.frames(1, 0, block[:100])]
    assert [(f.stream_epoch, f.sequence) for f in new_epoch] == [(1, 0)]


def test_event_messages_are_strict_json() -> None:
    text = event_message("audio_stream_start", sample_rate=44100, plan={"gain_db": np.float64(2.5)},
                         measurements={"true_peak_dbtp": float("-inf")}, stream_epoch=np.uint32(3))
    msg = json.loads(text)
    assert msg == {"type": "audio_stream_start", "sample_rate": 44100, "plan": {"gain_db": 2.5},
                   "measurements": {"true_peak_dbtp": None}, "stream_epoch": 3}
    with pytest.raises(ValueError):
        event_message("not_an_event")


def test_session_commands_are_validated() -> None:
    cmd = parse_session_command('{"type": "play_enhanced", "track_id": 4, "preset": "warm", "intensity": 0.5, "pace": "burst"}')
    assert (cmd.type, cmd.track_id, cmd.preset, cmd.intensity, cmd.pace) == ("play_enhanced", 4, "warm", 0.5, "burst")
    assert parse_session_command('{"type": "play_enhanced", "track_id": 1}').pace == "realtime"
    assert parse_session_command('{"type": "seek", "position_s": 12.5}').position_s == 12.5
    assert parse_session_command('{"type": "set_intensity", "intensity": 1}').intensity == 1.0
    assert parse_session_command('{"type": "pause"}').type == "pause"
    bad = {
        "not json": "bad_request",
        "[1, 2]": "bad_request",
        '{"type": "rm -rf"}': "unknown_method",
        '{"type": "play_enhanced", "track_id": "1"}': "invalid_params",
        '{"type": "play_enhanced", "track_id": true}': "invalid_params",
        '{"type": "play_enhanced", "track_id": 1, "pace": "ludicrous"}': "invalid_params",
        '{"type": "seek"}': "invalid_params",
        '{"type": "seek", "position_s": -1}': "invalid_params",
        '{"type": "seek", "position_s": 1e308}': "invalid_params",  # overflowed the session's frame arithmetic
        '{"type": "play_enhanced", "track_id": 1, "position_s": 1e308}': "invalid_params",
        '{"type": "play_enhanced", "track_id": 1, "position_s": -2}': "invalid_params",
        '{"type": "set_intensity", "intensity": NaN}': "invalid_params",
        '{"type": "set_preset", "preset": 3}': "invalid_params",
        '{"type": "pause", "pad": "' + "x" * 5000 + '"}': "bad_request",
    }
    for text, code in bad.items():
        with pytest.raises(FrameError) as info:
            parse_session_command(text)
        assert info.value.code == code, text


def test_frame_duration_stays_within_20_to_100_ms() -> None:
    assert frames_per_message(48_000, 0.1) == 4800
    assert frames_per_message(44_100, 0.02) == 882
    for duration_s in (0.01, 0.2):
        with pytest.raises(ValueError):
            frames_per_message(44_100, duration_s)
    framer = AudioFramer(44_100, frame_duration_s=0.1)
    sizes = [decode_audio_frame(m, 2).num_frames for m in framer.frames(0, 0, _music(10_000))]
    assert sizes == [4410, 4410, 1180]
