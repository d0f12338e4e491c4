"""Settings: defaults < config file < flags, with provenance; clear errors for bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from auralisd.config import (
    ConfigError,
    default_cache_mib,
    default_workers,
    format_settings,
    machine_memory_bytes,
    settings_from_argv,
)
from auralisd.main import main


@pytest.fixture(autouse=True)
def xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("XDG_CONFIG_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME", "XDG_RUNTIME_DIR"):
        monkeypatch.setenv(name, str(tmp_path / name.lower()))
    return tmp_path


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "auralisd.toml"
    path.write_text(text)
    return path


def test_defaults_come_from_the_xdg_directories(tmp_path: Path) -> None:
    settings, origin = settings_from_argv([])
    assert settings.database_path == str(tmp_path / "xdg_state_home" / "auralis" / "auralis.sqlite3")
    assert settings.control_socket_path == str(tmp_path / "xdg_runtime_dir" / "auralis" / "control.sock")
    assert (settings.http_host, settings.http_port, settings.sample_rate, settings.cache_mib) == (
        "127.0.0.1", 8765, 44100, default_cache_mib(),
    )  # fmt: skip
    assert settings.control_tcp is None and settings.music_dir == ()
    assert origin["http_port"] == "default"


def test_flags_override_the_file_and_provenance_says_so(tmp_path: Path) -> None:
    config = write_config(
        tmp_path, 'music_dir = ["~/Music", "/srv/music"]\nhttp_port = 9000\n# comment\nworkers = 1\nsample_rate = 48000\n'
    )
    settings, origin = settings_from_argv(["--config", str(config), "--http-port", "9100", "--music-dir", "/x"])
    assert settings.http_port == 9100 and origin["http_port"] == "flag --http-port"
    assert settings.workers == 1 and origin["workers"] == f"file {config} line 4"
    assert settings.sample_rate == 48000
    assert settings.music_dir == ("/x",)  # a repeatable flag replaces the file's array
    listing = format_settings(settings, origin)
    assert "http_port = 9100  # flag --http-port" in listing
    assert f"workers = 1  # file {config} line 4" in listing


def test_restore_paused_defaults_to_playing_on_and_the_flag_overrides_the_file(tmp_path: Path) -> None:
    assert settings_from_argv([])[0].restore_paused is False  # like MPD: what was playing plays on
    config = write_config(tmp_path, "restore_paused = true\n")
    settings, origin = settings_from_argv(["--config", str(config)])
    assert settings.restore_paused is True and origin["restore_paused"] == f"file {config} line 1"
    assert f"restore_paused = true  # file {config} line 1" in format_settings(settings, origin)
    settings, origin = settings_from_argv(["--config", str(config), "--no-restore-paused"])
    assert settings.restore_paused is False and origin["restore_paused"] == "flag --restore-paused"
    with pytest.raises(ConfigError, match="'restore_paused' must be true or false"):
        settings_from_argv(["--config", str(write_config(tmp_path, 'restore_paused = "yes"\n'))])


def test_the_default_config_file_is_read_when_present(tmp_path: Path) -> None:
    folder = tmp_path / "xdg_config_home" / "auralis"
    folder.mkdir(parents=True)
    (folder / "auralisd.toml").write_text("cache_mib = 64\n")
    settings, origin = settings_from_argv([])
    assert settings.cache_mib == 64 and origin["cache_mib"].startswith("file ")


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("http_port = 9000\nvolume = 3\n", "line 2: unknown key 'volume'"),
        ('workers = "two"\n', "line 1: 'workers' must be an integer"),
        ("sample_rate = 1000\n", "'sample_rate' must be between 8000 and 192000"),
        ('music_dir = "/one"\n', "'music_dir' must be an array of strings"),
        ('log_level = "loud"\n', "'log_level' must be one of debug, info, warning, error"),
        ("http_port = \n", "Invalid value"),
    ],
)
def test_invalid_files_name_the_key_and_line(tmp_path: Path, text: str, needle: str) -> None:
    config = write_config(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        settings_from_argv(["--config", str(config)])
    assert needle in str(info.value)
    assert str(config) in str(info.value)


def test_non_loopback_tcp_needs_a_token_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="requires token_file"):
        settings_from_argv(["--control-tcp", "0.0.0.0:7000"])
    token = tmp_path / "token"
    token.write_text("short\n")
    with pytest.raises(ConfigError, match="shorter than 16"):
        settings_from_argv(["--control-tcp", "0.0.0.0:7000", "--token-file", str(token)])
    token.write_text("0123456789abcdef0123\n")
    settings, _ = settings_from_argv(["--control-tcp", "0.0.0.0:7000", "--token-file", str(token)])
    assert settings.control_tcp_address() == ("0.0.0.0", 7000)
    assert settings_from_argv(["--control-tcp", "7001"])[0].control_tcp_address() == ("127.0.0.1", 7001)


def test_print_config_and_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--print-config", "--workers", "3"]) == 0
    out = capsys.readouterr().out
    assert "workers = 3  # flag --workers" in out and "sample_rate = 44100  # default" in out
    config = write_config(tmp_path, "nonsense = 1\n")
    assert main(["--config", str(config), "--print-config"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("auralisd: ") and "unknown key 'nonsense'" in err and "Traceback" not in err
    assert main(["--config", str(tmp_path / "missing.toml")]) == 2


def test_journald_lines_carry_priority_prefixes_and_no_timestamp(monkeypatch: pytest.MonkeyPatch) -> None:
    import io
    import logging

    from auralisd.logs import setup_logging

    stream = io.StringIO()
    monkeypatch.setenv("JOURNAL_STREAM", "8:1234")
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        setup_logging(logging.INFO, stream=stream)
        logging.getLogger("auralisd.test").warning("disk %s", "full")
        logging.getLogger("auralisd.test").info("ready")
        logging.getLogger("auralisd.test").debug("hidden")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    assert stream.getvalue().splitlines() == ["<4>auralisd.test: disk full", "<6>auralisd.test: ready"]


def test_non_loopback_http_needs_a_token_file(tmp_path: Path) -> None:
    for host in ("0.0.0.0", "::", "192.0.2.7"):
        with pytest.raises(ConfigError, match=r"http_host: serving HTTP on .* \(not loopback\) requires token_file"):
            settings_from_argv(["--http-host", host])
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        assert settings_from_argv(["--http-host", host])[0].http_host == host
    token = tmp_path / "token"
    token.write_text("short\n")
    with pytest.raises(ConfigError, match="shorter than 16"):
        settings_from_argv(["--http-host", "0.0.0.0", "--token-file", str(token)])
    token.write_text("0123456789abcdef0123\n")
    assert settings_from_argv(["--http-host", "0.0.0.0", "--token-file", str(token)])[0].http_host == "0.0.0.0"


def test_non_loopback_http_without_token_exits_2_with_one_line(tmp_path: Path) -> None:
    """The real program: a clean refusal (systemd's RestartPreventExitStatus=2), no traceback, nothing bound."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config")}
    result = subprocess.run(
        [sys.executable, "-m", "auralisd", "--http-host", "0.0.0.0", "--http-port", "0",
         "--state-dir", str(tmp_path / "state"), "--runtime-dir", str(tmp_path / "run")],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        "auralisd: http_host: serving HTTP on 0.0.0.0 (not loopback) requires token_file"
    ]
    assert not (tmp_path / "run" / "control.sock").exists()


def test_demo_names_the_real_player_address(tmp_path: Path) -> None:
    from auralisd.demo import player_url

    assert player_url([]) == "http://127.0.0.1:8765/"
    assert player_url(["--http-port", "9123"]) == "http://127.0.0.1:9123/"
    assert player_url(["--http-host", "::1", "--http-port", "9124"]) == "http://[::1]:9124/"
    config = write_config(tmp_path, "http_port = 9125\n")
    assert player_url(["--config", str(config)]) == "http://127.0.0.1:9125/"
    assert "8765" not in player_url(["--http-port", "0"])


def test_print_config_is_valid_toml_that_reads_back_as_the_same_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 11: ``config = # (unset)`` was not TOML. Unset keys are comments; strings are escaped
    (quotes, backslashes, control characters); the output works as a config file."""
    import dataclasses
    import tomllib

    odd = tmp_path / 'mu"sic\\ with\ttab\nnewline é'
    argv = ["--music-dir", str(odd), "--music-dir", str(tmp_path / "plain"), "--workers", "3",
            "--allowed-origin", "http://x.example:1"]  # fmt: skip
    assert main(["--print-config", *argv]) == 0
    out = capsys.readouterr().out
    data = tomllib.loads(out)  # raised TOMLDecodeError before the fix
    assert data["music_dir"] == [str(odd), str(tmp_path / "plain")]
    assert data["workers"] == 3 and "token_file" not in data and "control_tcp" not in data
    assert "config" not in data  # a config file cannot name a config file: shown as a comment
    (tmp_path / "printed.toml").write_text(out)
    again, _ = settings_from_argv(["--config", str(tmp_path / "printed.toml")])
    first, _ = settings_from_argv(argv)
    assert dataclasses.replace(again, config=None) == first


def test_outputs_from_flags_and_file_several_of_each_and_print_config_reads_back(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import tomllib

    (tmp_path / "auralisd.toml").write_text('snapcast = ["kitchen=tcp://127.0.0.1:4954"]\n')
    argv = ["--config", str(tmp_path / "auralisd.toml"),
            "--snapcast", "room=tcp://127.0.0.1:4953?sampleformat=44100:24:2", "--snapcast", "den=pipe:///tmp/snapfifo"]
    settings, origin = settings_from_argv(argv)
    specs = settings.output_specs()
    assert [(s.kind, s.name, s.target) for s in specs] == [  # flags win over the file, as for every key
        ("snapcast", "room", "tcp 127.0.0.1:4953"), ("snapcast", "den", "pipe /tmp/snapfifo"),
    ]
    assert specs[0].sampleformat == (44100, 24, 2) and specs[1].sampleformat == (48000, 16, 2)
    assert origin["snapcast"] == "flag --snapcast"
    from_file, origin = settings_from_argv(argv[:2])
    assert [s.name for s in from_file.output_specs()] == ["kitchen"] and origin["snapcast"].startswith("file ")
    assert main(["--print-config", *argv]) == 0
    out = capsys.readouterr().out
    (tmp_path / "printed.toml").write_text(out)
    again, _ = settings_from_argv(["--config", str(tmp_path / "printed.toml")])
    assert again.output_specs() == specs
    assert tomllib.loads(out)["snapcast"][0].startswith("room=")


@pytest.mark.parametrize(
    ("flag", "value", "needle"),
    [
        ("--snapcast", "room", "must be NAME=URL"),
        ("--snapcast", "stream=tcp://127.0.0.1:4953", "output name 'stream'"),
        ("--snapcast", "room=udp://127.0.0.1:4953", "tcp://HOST:PORT or pipe:///PATH"),
        ("--snapcast", "room=tcp://127.0.0.1:4953?sampleformat=48000:8:2", "sampleformat must be RATE:BITS:2"),
        ("--snapcast", "room=pipe://relative", "absolute path"),
        ("--snapcast", "room=tcp://127.0.0.1:4953?codec=flac", "unknown option 'codec'"),
    ],
)
def test_bad_outputs_are_one_sentence_naming_the_flag(flag: str, value: str, needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        settings_from_argv([flag, value])
    assert needle in str(err.value) and flag in str(err.value)


def test_two_outputs_with_one_name_are_refused() -> None:
    with pytest.raises(ConfigError, match="two outputs are named 'room'"):
        settings_from_argv(["--snapcast", "room=tcp://127.0.0.1:1", "--snapcast", "room=pipe:///tmp/snapfifo"])


def test_sidecar_and_dask_settings_round_trip_through_print_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import dataclasses
    import tomllib

    settings, origin = settings_from_argv([])
    assert (settings.sidecars, settings.sidecar_dir, settings.dask_scheduler, settings.dask_path_map) == (
        "beside", None, None, ())  # fmt: skip
    mirror = tmp_path / "fp mirror"
    argv = ["--sidecar-dir", str(mirror), "--dask-scheduler", "tcp://10.0.0.5:8786",
            "--dask-path-map", f"{tmp_path}/music=/mnt/music"]  # fmt: skip
    settings, origin = settings_from_argv(argv)
    assert settings.sidecars == "mirror" and origin["sidecars"].startswith("implied by sidecar_dir")
    assert settings.sidecar_dir == str(mirror) and settings.dask_path_map == (f"{tmp_path}/music=/mnt/music",)
    assert main(["--print-config", *argv]) == 0
    out = capsys.readouterr().out
    data = tomllib.loads(out)
    assert (data["sidecars"], data["dask_scheduler"]) == ("mirror", "tcp://10.0.0.5:8786")
    (tmp_path / "printed.toml").write_text(out)
    again, _ = settings_from_argv(["--config", str(tmp_path / "printed.toml")])
    assert dataclasses.replace(again, config=None) == settings
    assert settings_from_argv(["--sidecars", "none"])[0].sidecars == "none"


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--sidecars", "mirror"], "needs sidecar_dir"),
        (["--sidecars", "elsewhere"], "one of beside, mirror, none"),
        (["--dask-path-map", "/music"], "dask_path_map"),
        (["--dask-path-map", "/a=/b"], "set dask_scheduler too"),
    ],
)
def test_bad_sidecar_and_dask_settings_name_the_key(argv: list[str], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        settings_from_argv(argv)


def test_dask_scheduler_without_distributed_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "distributed" else real(name, *a))
    with pytest.raises(ConfigError, match=r"pip install 'auralis\[cluster\]'"):
        settings_from_argv(["--dask-scheduler", "tcp://127.0.0.1:8786"])


def test_opus_bitrate_from_flag_and_file_within_libopus_range(tmp_path: Path) -> None:
    assert settings_from_argv([])[0].opus_bitrate_kbps == 160
    config = write_config(tmp_path, "opus_bitrate_kbps = 96\n")
    settings, origin = settings_from_argv(["--config", str(config)])
    assert settings.opus_bitrate_kbps == 96 and origin["opus_bitrate_kbps"] == f"file {config} line 1"
    assert settings_from_argv(["--opus-bitrate-kbps", "64"])[0].opus_bitrate_kbps == 64
    with pytest.raises(ConfigError, match="'opus_bitrate_kbps' must be between 6 and 510"):
        settings_from_argv(["--config", str(write_config(tmp_path, "opus_bitrate_kbps = 1000\n"))])


MIB = 1024 * 1024
GIB = 1024 * MIB


def test_the_cache_default_is_a_256th_of_the_memory_between_16_and_128_mib() -> None:
    # issue 15: sized from the machine, not a fixed 256 MiB (docs/usage.md, "Small boards")
    assert default_cache_mib(512 * MIB) == 16  # a Raspberry Pi Zero 2: the floor
    assert default_cache_mib(1 * GIB) == 16
    assert default_cache_mib(8 * GIB) == 32
    assert default_cache_mib(16 * GIB) == 64
    assert default_cache_mib(24 * GIB) == 96
    assert default_cache_mib(32 * GIB) == 128
    assert default_cache_mib(256 * GIB) == 128  # the cap


def test_the_worker_default_is_one_per_core_and_at_most_one_per_512_mib() -> None:
    assert default_workers(4, 512 * MIB) == 1  # Pi Zero 2: four cores, one worker
    assert default_workers(4, 1 * GIB) == 2  # Pi 3
    assert default_workers(4, 8 * GIB) == 4
    assert default_workers(2, 24 * GIB) == 2
    assert default_workers(8, 100 * MIB) == 1  # never none


def test_the_defaults_follow_this_machine_and_print_config_says_how() -> None:
    memory = machine_memory_bytes()
    assert memory is not None and memory > 0
    settings, origin = settings_from_argv([])
    assert settings.cache_mib == default_cache_mib(memory)
    assert settings.workers == default_workers(None, memory)
    assert "1/256 of the memory" in origin["cache_mib"]
    printed = format_settings(settings, origin)
    assert f"cache_mib = {settings.cache_mib}  # default (1/256 of the memory, 16-128 MiB)" in printed.splitlines()
    flagged, origin = settings_from_argv(["--cache-mib", "32", "--workers", "1"])
    assert (flagged.cache_mib, flagged.workers) == (32, 1) and origin["cache_mib"] == "flag --cache-mib"
