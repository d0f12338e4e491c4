"""A minimal blocking msgpack-RPC client for the daemon tests (stdlib socket + msgpack)."""

from __future__ import annotations

import socket
import time
from typing import Any

import msgpack


class RpcError(Exception):
    def __init__(self, error: dict[str, str]) -> None:
        super().__init__(f"{error['code']}: {error['message']}")
        self.code = error["code"]
        self.message = error["message"]


class Client:
    def __init__(self, sock: socket.socket, timeout_s: float = 30.0) -> None:
        self.sock = sock
        self.sock.settimeout(timeout_s)
        self.unpacker = msgpack.Unpacker(raw=False)
        self.msgid = 0
        self.events: list[tuple[str, Any]] = []

    @classmethod
    def unix(cls, path: str, timeout_s: float = 30.0) -> Client:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout_s)
        try:
            sock.connect(path)
        except OSError:
            sock.close()
            raise
        return cls(sock, timeout_s)

    @classmethod
    def tcp(cls, host: str, port: int, timeout_s: float = 30.0) -> Client:
        return cls(socket.create_connection((host, port), timeout=timeout_s), timeout_s)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_message(self) -> Any:
        while True:
            for message in self.unpacker:
                return message
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("daemon closed the connection")
            self.unpacker.feed(data)

    def call_raw(self, method: str, params: dict[str, Any] | None = None) -> list[Any]:
        self.msgid += 1
        self.sock.sendall(msgpack.packb([0, self.msgid, method, params or {}], use_bin_type=True))
        while True:
            message = self.read_message()
            if message[0] == 2:
                self.events.append((message[1], message[2]))
                continue
            assert message[0] == 1 and message[1] == self.msgid, message
            return message

    def call(self, method: str, **params: Any) -> Any:
        _, _, error, result = self.call_raw(method, params)
        if error is not None:
            raise RpcError(error)
        return result

    def wait_event(self, name: str, predicate=lambda data: True, timeout_s: float = 20.0) -> Any:
        deadline = time.monotonic() + timeout_s
        for i, (event, data) in enumerate(self.events):
            if event == name and predicate(data):
                del self.events[: i + 1]
                return data
        self.events.clear()
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                message = self.read_message()
            except TimeoutError:
                break
            if message[0] == 2 and message[1] == name and predicate(message[2]):
                return message[2]
        raise TimeoutError(f"no {name} event within {timeout_s} s")

    def wait_status(self, predicate, timeout_s: float = 20.0, interval_s: float = 0.05) -> dict[str, Any]:
        """The first status that ``predicate`` accepts. A poll of another process, for conditions no event
        announces: ``timeout_s`` is a safety bound that fails the test, never one that paces it."""
        deadline = time.monotonic() + timeout_s
        status = self.call("status")
        while not predicate(status):
            if time.monotonic() > deadline:
                raise TimeoutError(f"status never matched; last: {status}")
            time.sleep(interval_s)
            status = self.call("status")
        return status
