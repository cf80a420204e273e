"""Real network faults for the reliability tests: a TCP proxy in front of a real server that goes
down at a chosen request, as a service (or the network to it) does in production."""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Literal

Mode = Literal["refuse", "lose-answer"]


class CuttingProxy:
    """Forwards 127.0.0.1:<port> to an upstream server. Once armed, the first request whose bytes
    contain `pattern` takes the service down: in "refuse" mode that request never reaches the
    server; in "lose-answer" mode the server gets it and acts on it, but the answer is lost. From
    then on every connection is refused, until `restore()`."""

    def __init__(self, upstream_port: int):
        self.upstream_port = upstream_port
        self.pattern: bytes | None = None
        self.mode: Mode = "refuse"
        self.cut = threading.Event()
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener = self._listen(0)
        self.port = self._listener.getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def arm(self, pattern: bytes, mode: Mode) -> None:
        self.pattern, self.mode = pattern, mode

    def restore(self) -> None:
        """The service is reachable again (same port)."""
        self.pattern, self.cut = None, threading.Event()
        self._listener = self._listen(self.port)

    def close(self) -> None:
        self._go_down()

    def _listen(self, port: int) -> socket.socket:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(64)
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return listener

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed: the service is down
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            with self._lock:
                self._conns += [client, upstream]
            threading.Thread(target=self._requests, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._answers, args=(upstream, client), daemon=True).start()

    def _requests(self, client: socket.socket, upstream: socket.socket) -> None:
        while data := self._recv(client):
            if self.pattern is not None and self.pattern in data and not self.cut.is_set():
                self.cut.set()
                if self.mode == "refuse":
                    self._go_down()
                    return
                # lose-answer: the request (and the rest of its body, which may come in later
                # reads) reaches the server, which acts on it; its answer is dropped (_answers)
                # and the connection dies once the server has had time to act
                threading.Timer(2.0, self._go_down).start()
            with contextlib.suppress(OSError):
                upstream.sendall(data)

    def _answers(self, upstream: socket.socket, client: socket.socket) -> None:
        while data := self._recv(upstream):
            if self.cut.is_set():
                continue  # lost on the way back
            with contextlib.suppress(OSError):
                client.sendall(data)
        with contextlib.suppress(OSError):
            client.shutdown(socket.SHUT_WR)

    @staticmethod
    def _recv(sock: socket.socket) -> bytes:
        try:
            return sock.recv(65536)
        except OSError:
            return b""

    def _go_down(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                conn.close()
