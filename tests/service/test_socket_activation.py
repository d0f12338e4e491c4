"""Socket activation: LISTEN_FDS / LISTEN_PID / LISTEN_FDNAMES -> listening sockets by name."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time

import pytest
from helpers import require_tool

from auralisd.systemd import SocketActivationError, listen_fds, take_control_socket

# A child that takes its activated sockets, reports them on the first connection to "control",
# and shows which LISTEN_* variables are left for its own children (none should be).
CHILD = textwrap.dedent(
    """
    import json, os, socket, sys
    from auralisd.systemd import listen_fds, take_control_socket
    activated = listen_fds()
    names = {name: [[s.family == socket.AF_UNIX, s.type == socket.SOCK_STREAM] for s in socks]
             for name, socks in activated.items()}
    control = take_control_socket(activated)
    left = sorted(k for k in os.environ if k.startswith("LISTEN_"))
    conn, _ = control.accept()
    with conn:
        conn.sendall(json.dumps({"names": names, "left": left, "fd": control.fileno(),
                                 "cloexec": not os.get_inheritable(control.fileno())}).encode())
    control.close()
    """
)


def wait_for_path(path: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30.0
    while not os.path.exists(path):
        assert proc.poll() is None, f"exited with {proc.returncode} before binding {path}"
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def read_report(path: str) -> dict:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(30.0)
        client.connect(path)
        data = b""
        while chunk := client.recv(4096):
            data += chunk
    return json.loads(data)


def test_systemd_socket_activate_passes_the_named_control_socket(tmp_path):
    tool = require_tool("systemd-socket-activate")
    path = str(tmp_path / "control.sock")
    proc = subprocess.Popen(
        [tool, "-l", path, "--fdname=control", sys.executable, "-c", CHILD],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for_path(path, proc)  # the tool binds, then execs the child on the first connection
        report = read_report(path)
        assert proc.wait(timeout=30) == 0, proc.stderr.read().decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    assert report == {"names": {"control": [[True, True]]}, "left": [], "fd": 3, "cloexec": True}


def run_with_fds(sockets: list[socket.socket], env: dict[str, str], code: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a child whose fds 3, 4, ... are ``sockets`` (what systemd does), with ``env``.

    ``LISTEN_PID`` may be given as ``"self"``: the child sets it to its own pid before ``code``.
    """
    fds = [s.fileno() for s in sockets]
    trampoline = textwrap.dedent(
        f"""
        import os, sys
        fds = {fds!r}
        for index, fd in enumerate(fds):
            os.dup2(fd, 3 + index, inheritable=False)
        if os.environ.get("LISTEN_PID") == "self":
            os.environ["LISTEN_PID"] = str(os.getpid())
        """
    )
    return subprocess.run(
        [sys.executable, "-c", trampoline + textwrap.dedent(code)],
        pass_fds=fds,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_names_multiple_sockets_and_falls_back_to_unknown(tmp_path):
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    unix.bind(str(tmp_path / "a.sock"))
    unix.listen()
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tcp.bind(("127.0.0.1", 0))
    tcp.listen()
    code = """
        import json, socket
        from auralisd.systemd import listen_fds
        got = listen_fds()
        print(json.dumps({n: [[s.family.name, s.fileno()] for s in socks] for n, socks in got.items()}))
    """
    try:
        named = run_with_fds([unix, tcp], {"LISTEN_PID": "self", "LISTEN_FDS": "2", "LISTEN_FDNAMES": "control:http"}, code)
        assert named.returncode == 0, named.stderr
        assert json.loads(named.stdout) == {"control": [["AF_UNIX", 3]], "http": [["AF_INET", 4]]}
        # LISTEN_FDNAMES missing or of the wrong length: every descriptor is "unknown".
        unnamed = run_with_fds([unix, tcp], {"LISTEN_PID": "self", "LISTEN_FDS": "2", "LISTEN_FDNAMES": "x"}, code)
        assert json.loads(unnamed.stdout) == {"unknown": [["AF_UNIX", 3], ["AF_INET", 4]]}
        # Variables inherited from a parent (LISTEN_PID is not us) are ignored.
        foreign = run_with_fds([unix], {"LISTEN_PID": "1", "LISTEN_FDS": "1"}, code)
        assert json.loads(foreign.stdout) == {}
    finally:
        unix.close()
        tcp.close()


def test_a_descriptor_that_is_not_a_socket_is_a_clear_error(tmp_path):
    code = """
        import os
        os.dup2(os.open(os.devnull, os.O_RDONLY), 3)
        from auralisd.systemd import listen_fds, SocketActivationError
        try:
            listen_fds()
        except SocketActivationError as exc:
            print("error:", exc)
    """
    result = run_with_fds([], {"LISTEN_PID": "self", "LISTEN_FDS": "1"}, code)
    assert "error: passed file descriptor 3 (unknown) is not a socket" in result.stdout, result.stderr


def test_without_activation_nothing_is_passed_and_variables_are_consumed():
    assert listen_fds({}) == {}
    env = {"LISTEN_PID": str(os.getpid() + 1), "LISTEN_FDS": "1", "LISTEN_FDNAMES": "control"}
    assert listen_fds(env) == {}
    assert env == {}
    with pytest.raises(SocketActivationError):
        listen_fds({"LISTEN_PID": "x", "LISTEN_FDS": "1"})


def test_take_control_socket_prefers_the_name_then_a_lone_unix_stream_socket(tmp_path):
    a = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    b = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        activated = {"http": [b], "control": [a]}
        assert take_control_socket(activated) is a and activated == {"http": [b]}
        assert take_control_socket({"auralisd.socket": [c], "http": [b]}) is c
        assert take_control_socket({"http": [b]}) is None
        assert take_control_socket({"x": [a], "y": [c]}) is None, "two candidates: ambiguous"
    finally:
        for s in (a, b, c):
            s.close()
