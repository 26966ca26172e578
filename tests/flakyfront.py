"""A TCP front for an HTTP server (the test S3 endpoint) whose first connections fail the way a sick server fails:
answered 503, or never answered at all; every later connection is forwarded untouched. It counts what it saw, so a
test can prove a client retried, or did not, without timing it."""

from __future__ import annotations

import socket
import threading

UNAVAILABLE = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/xml\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class FlakyFront:
    """127.0.0.1:port in front of target; the first `failures` connections get `mode` ("503" or "silent").

    `requests` counts the HTTP requests it received, failed or forwarded."""

    def __init__(self, target: str, failures: int, mode: str = "503"):
        host, port = target.rsplit(":", 1)
        self.target, self.failures, self.mode = (host, int(port)), failures, mode
        self.connections = self.failed = self.requests = 0
        self._held: list[socket.socket] = []
        self._lock = threading.Lock()
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"127.0.0.1:{self._sock.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                fail = self.failed < self.failures
                self.failed += fail
            if fail:
                threading.Thread(target=self._fail, args=(client,), daemon=True).start()
            else:
                upstream = socket.create_connection(self.target, timeout=10)
                threading.Thread(target=self._pipe, args=(client, upstream, True), daemon=True).start()
                threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()

    def _fail(self, client: socket.socket) -> None:
        with self._lock:
            self.requests += 1
        try:
            data = b""
            while b"\r\n\r\n" not in data and (chunk := client.recv(65536)):
                data += chunk
            if self.mode == "503":
                client.sendall(UNAVAILABLE)
                client.close()
            else:
                self._held.append(client)  # read, never answered: the client's read timeout ends it
        except OSError:
            client.close()

    def close(self) -> None:
        self._sock.close()
        for held in self._held:
            held.close()

    def _pipe(self, src: socket.socket, dst: socket.socket, requests: bool) -> None:
        try:
            while data := src.recv(65536):
                if requests:  # a request line per request; the tests' bodies are small and never hold one
                    with self._lock:
                        self.requests += data.count(b" HTTP/1.1\r\n")
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
