"""A test helper that records (and refuses) every attempt to open a network connection."""

from __future__ import annotations

import socket

import pytest


class NoNetwork:
    """Install with ``NoNetwork().install(monkeypatch)``; ``attempts`` lists every address a
    test tried to reach."""

    def __init__(self) -> None:
        self.attempts: list[object] = []

    def install(self, monkeypatch: pytest.MonkeyPatch) -> NoNetwork:
        def refuse(sock, address, *a, **k):  # noqa: ANN001
            self.attempts.append(address)
            raise OSError("network disabled in this test")

        def refuse_conn(address, *a, **k):  # noqa: ANN001
            self.attempts.append(address)
            raise OSError("network disabled in this test")

        monkeypatch.setattr(socket.socket, "connect", refuse)
        monkeypatch.setattr(socket.socket, "connect_ex", refuse)
        monkeypatch.setattr(socket, "create_connection", refuse_conn)
        return self
