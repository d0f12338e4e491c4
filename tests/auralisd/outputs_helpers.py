"""Real servers for the output tests (snapserver, snapclient, icecast2) and the audio comparison they share.

Every server runs on free loopback ports in the test's temporary folder and is stopped (killed if need be)
when the test ends, also on failure.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import signal as sps

from tests.helpers import require_tool

from .conftest import REPO, free_port


def wait_for(predicate, timeout_s: float, what: str, interval_s: float = 0.05):
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} within {timeout_s} s")
        time.sleep(interval_s)


def stop_process(proc: subprocess.Popen | None, sig: int = signal.SIGTERM) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


# ----------------------------------------------------------------------------------------------------- Snapcast
class SnapServer:
    """snapserver with one tcp source in server mode, its JSON-RPC on TCP, optionally a control script."""

    def __init__(self, root: Path, *, controlscript: Path | None = None, env: dict[str, str] | None = None,
                 sampleformat: str = "48000:16:2") -> None:
        require_tool("snapserver")
        self.sampleformat = sampleformat
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.source_port, self.stream_port, self.rpc_port = free_port(), free_port(), free_port()
        self.controlscript = controlscript
        self.env = env
        self.proc: subprocess.Popen | None = None
        self.log_path = root / "snapserver.log"

    @property
    def source_uri(self) -> str:
        uri = f"tcp://127.0.0.1:{self.source_port}/?name=Auralis&mode=server&sampleformat={self.sampleformat}"
        if self.controlscript is not None:
            uri += f"&controlscript={self.controlscript}"
        return uri

    def start(self) -> SnapServer:
        conf = self.root / "snapserver.conf"
        conf.write_text(
            f"[server]\ndatadir = {self.root}\n[http]\nenabled = false\n"
            f"[tcp]\nenabled = true\nbind_to_address = 127.0.0.1\nport = {self.rpc_port}\n"
            f"[stream]\nbind_to_address = 127.0.0.1\nport = {self.stream_port}\nsource = {self.source_uri}\n"
            "[logging]\nsink = stderr\nfilter = *:info\n"
        )
        env = dict(os.environ, **(self.env or {}))
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(["snapserver", "-c", str(conf)], stdout=self._log, stderr=subprocess.STDOUT,
                                     env=env, start_new_session=True)
        wait_for(lambda: _port_open(self.rpc_port) and _port_open(self.source_port), 20, "snapserver listening")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)  # snapserver and its control script
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        if self.proc is not None:
            self._log.close()
            self.proc = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def rpc(self, method: str, params: dict[str, Any] | None = None, timeout_s: float = 10.0) -> Any:
        """One JSON-RPC request to snapserver (newline-delimited JSON over TCP); notifications are skipped."""
        with socket.create_connection(("127.0.0.1", self.rpc_port), timeout=timeout_s) as sock:
            request = {"id": 1, "jsonrpc": "2.0", "method": method, **({"params": params} if params else {})}
            sock.sendall(json.dumps(request).encode() + b"\r\n")
            buffer = b""
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError(f"snapserver closed the JSON-RPC connection ({method})")
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if not line.strip():
                        continue
                    message = json.loads(line)
                    if message.get("id") == 1:
                        if "error" in message:
                            raise RuntimeError(f"snapserver {method}: {message['error']}")
                        return message["result"]

    def stream_properties(self) -> dict[str, Any]:
        streams = self.rpc("Server.GetStatus")["server"]["streams"]
        return streams[0].get("properties") or {}


class SnapClient:
    """snapclient writing what it would play to a file (its ``file`` player)."""

    def __init__(self, root: Path, server: SnapServer) -> None:
        require_tool("snapclient")
        self.path = root / "client.pcm"
        self.log_path = root / "snapclient.log"
        self.server = server
        self.proc: subprocess.Popen | None = None

    def start(self) -> SnapClient:
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            ["snapclient", "-h", "127.0.0.1", "-p", str(self.server.stream_port), "--hostID", "auralis-test",
             "--player", f"file:filename={self.path},mode=a", "--logsink", "stderr"],
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def stop(self) -> None:
        stop_process(self.proc)
        if self.proc is not None:
            self._log.close()
            self.proc = None

    def audio(self) -> np.ndarray:
        """What it wrote: float (frames, 2) at 48 kHz."""
        data = np.fromfile(self.path, dtype="<i2")
        return data[: data.size // 2 * 2].reshape(-1, 2).astype(np.float64) / 32768.0


class RecordingProxy:
    """A TCP forwarder between auralisd and snapserver's source port that keeps every byte auralisd sent
    (what the output delivered, before snapserver and snapclient do anything with it)."""

    def __init__(self, upstream_port: int) -> None:
        import threading

        self.upstream_port = upstream_port
        self.sent = bytearray()
        self.connections = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import threading

        while True:
            try:
                down, _ = self._listener.accept()
            except OSError:
                return
            try:
                up = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=2)
            except OSError:
                down.close()  # snapserver is away: auralisd sees the connection end, as with snapserver itself
                continue
            self.connections += 1
            threading.Thread(target=self._pipe, args=(down, up), daemon=True).start()

    def _pipe(self, down: socket.socket, up: socket.socket) -> None:
        up.settimeout(None)
        try:
            while True:
                data = down.recv(65536)
                if not data:
                    break
                with self._lock:
                    self.sent += data
                up.sendall(data)
        except OSError:
            pass
        finally:
            down.close()
            up.close()

    def close(self) -> None:
        self._listener.close()

    def audio(self) -> np.ndarray:
        with self._lock:
            data = np.frombuffer(bytes(self.sent), dtype="<i2")
        return data[: data.size // 2 * 2].reshape(-1, 2).astype(np.float64) / 32768.0


def control_script_wrapper(root: Path, http_base: str) -> Path:
    """An executable that runs ``clients.snapcast_control`` from this checkout (snapserver needs a path)."""
    import sys

    path = root / "auralis-snapcast-control"
    path.write_text(f"#!/bin/sh\ncd {REPO}\nexec {sys.executable} -m clients.snapcast_control --http {http_base} \"$@\"\n")
    path.chmod(0o755)
    return path


# ----------------------------------------------------------------------------------------------------- Icecast
@dataclass
class IcecastServer:
    """icecast2 with a generated config on a free loopback port. As root it must drop privileges
    (``<changeowner>``): Icecast refuses to run as root otherwise."""

    root: Path
    password: str = "hackme-source-1"
    port: int = 0
    proc: subprocess.Popen | None = None
    log_dir: Path = Path()

    def __post_init__(self) -> None:
        require_tool("icecast2")
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        import tempfile

        # written by the unprivileged user Icecast changes to: outside pytest's 0700 folders
        logs = Path(tempfile.mkdtemp(prefix="auralis-icecast-"))
        os.chmod(logs, 0o777)
        self.log_dir = logs
        owner = ("<security><chroot>0</chroot><changeowner><user>nobody</user><group>nogroup</group>"
                 "</changeowner></security>") if os.geteuid() == 0 else "<security><chroot>0</chroot></security>"
        (self.root / "icecast.xml").write_text(f"""<icecast>
  <location>test</location><admin>test@localhost</admin>
  <limits><clients>400</clients><sources>8</sources><queue-size>1048576</queue-size><client-timeout>30</client-timeout>
    <header-timeout>15</header-timeout><source-timeout>10</source-timeout><burst-size>65536</burst-size></limits>
  <authentication><source-password>{self.password}</source-password><admin-user>admin</admin-user>
    <admin-password>admin-{self.password}</admin-password></authentication>
  <hostname>127.0.0.1</hostname>
  <listen-socket><port>{self.port}</port><bind-address>127.0.0.1</bind-address></listen-socket>
  <paths><basedir>/usr/share/icecast2</basedir><logdir>{logs}</logdir><webroot>/usr/share/icecast2/web</webroot>
    <adminroot>/usr/share/icecast2/admin</adminroot></paths>
  <logging><accesslog>access.log</accesslog><errorlog>error.log</errorlog><loglevel>3</loglevel></logging>
  {owner}
</icecast>
""")

    def start(self) -> IcecastServer:
        self._out = open(self.root / "icecast.out", "ab")
        self.proc = subprocess.Popen(["icecast2", "-c", str(self.root / "icecast.xml")], stdout=self._out,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        wait_for(lambda: self.status() is not None, 20, "icecast2 answering")
        return self

    def stop(self) -> None:
        stop_process(self.proc)
        if self.proc is not None:
            self._out.close()
            self.proc = None

    def remove(self) -> None:
        import shutil

        self.stop()
        shutil.rmtree(self.log_dir, ignore_errors=True)

    def status(self) -> dict[str, Any] | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/status-json.xsl", timeout=2) as reply:
                return json.load(reply)["icestats"]
        except (OSError, ValueError):
            return None

    def source(self, mount: str) -> dict[str, Any] | None:
        stats = self.status() or {}
        sources = stats.get("source") or []
        for source in sources if isinstance(sources, list) else [sources]:
            if source.get("listenurl", "").endswith(mount):
                return source
        return None


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


# ----------------------------------------------------------------------------------------------------- audio
def sound_runs(x: np.ndarray, rate: int, *, window_s: float = 0.01, floor_db: float = -80.0,
               min_s: float = 0.3) -> list[tuple[int, int]]:
    """``[start, stop)`` frames of the stretches that are not silence (10 ms windows above ``floor_db``)."""
    w = int(rate * window_s)
    n = x.shape[0] // w
    rms = np.sqrt(np.mean(x[: n * w].reshape(n, w, -1) ** 2, axis=(1, 2)))
    loud = rms > 10 ** (floor_db / 20)
    runs, start = [], None
    for i, on in enumerate(np.append(loud, False)):
        if on and start is None:
            start = i
        elif not on and start is not None:
            if (i - start) * window_s >= min_s:
                runs.append((start * w, i * w))
            start = None
    return runs


def locate(piece: np.ndarray, reference: np.ndarray) -> int:
    """Where ``piece`` (mono) starts in ``reference`` (mono): the best normalised cross-correlation
    (plain correlation would prefer the loudest part of the reference)."""
    corr = sps.correlate(reference, piece, mode="valid", method="fft")
    energy = np.cumsum(np.concatenate([[0.0], reference**2]))
    window = (energy[piece.size :] - energy[: -piece.size])[: corr.size]
    floor = 0.01 * float(np.sum(piece**2))  # near-silent stretches of the reference cannot match music
    score = np.where(window > floor, corr / np.sqrt(np.maximum(window, floor)), -np.inf)
    return int(np.argmax(score))


@dataclass
class RunMatch:
    client_start: int
    client_stop: int
    ref_start: int  # where the run's first frame is in the reference
    max_step: int  # largest jump between consecutive windows' offsets (0: sample-continuous)
    level_db: float  # run level minus the reference's over the same frames
    residual_db: float  # median per-window error relative to the signal

    @property
    def ref_stop(self) -> int:
        return self.ref_start + (self.client_stop - self.client_start)


def match_runs(client: np.ndarray, reference: np.ndarray, rate: int, *, window_s: float = 0.25,
               search: int = 64) -> list[RunMatch]:
    """Align ``client`` with ``reference``: each sounding run (90 ms or longer) is followed window by window
    (each window searched within ``search`` frames of where the last one was); where that fails (a jump
    inside the run, e.g. two connections back to back) a new stretch starts from a global search."""
    mono_ref = reference.mean(axis=1)
    mono_client = client.mean(axis=1)
    out: list[RunMatch] = []

    def error_db(s: int, here: int, w: int) -> float:
        diff = client[s : s + w] - reference[here : here + w]
        return float(10 * np.log10(np.mean(diff**2) / max(np.mean(client[s : s + w] ** 2), 1e-20) + 1e-20))

    edge = int(0.02 * rate)
    for run_a, run_b in sound_runs(client, rate, min_s=0.09):
        a, b = run_a + edge, run_b - edge  # windows leave the first and last 20 ms (half silence), ...
        w = min(int(rate * window_s), b - a)
        s = a
        while s + w <= b:
            offset = locate(mono_client[s : s + w], mono_ref) - s
            if error_db(s, s + offset, w) > -30:
                s += w  # this window matches nothing: skip it
                continue
            start, offsets, errors = s, [], []
            ref_end = False
            while s + w <= b:
                guess = s + offset
                lo, hi = max(0, guess - search), min(mono_ref.size - w, guess + search)
                if hi < lo:
                    ref_end = True  # the reference ends inside this window: the stretch reaches its end
                    break
                here = locate(mono_client[s : s + w], mono_ref[lo : hi + w]) + lo
                err = error_db(s, here, w)
                if err > -30:
                    break  # a jump: the next stretch starts here
                offset = here - s
                offsets.append(offset)
                errors.append(err)
                s += w
            if not offsets:
                s += w
                continue
            stop = s if s + w <= b else b
            if ref_end:
                stop = min(b, mono_ref.size - offset)
            first = offsets[0]
            ref_piece = reference[start + first : stop + first]
            piece = client[start : start + ref_piece.shape[0]]
            level = 10 * np.log10(np.mean(piece**2) / np.mean(ref_piece**2))
            steps = np.abs(np.diff(offsets)) if len(offsets) > 1 else np.zeros(1)
            # ... but the stretch reaches the run's edges (to the 10 ms the silence detector sees)
            lo_edge = run_a if start == a else start
            hi_edge = run_b if stop + w > b and not ref_end else stop
            out.append(RunMatch(lo_edge, hi_edge, lo_edge + first, int(steps.max()), float(level),
                                float(np.median(errors))))
    return out
