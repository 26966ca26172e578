"""A TCP proxy on loopback that can be cut, restored and slowed: an outage, or a slow link, of whatever sits behind it.

The fault tests and the chaos soak (benchmarks/soak.py) put it between the services and the store.
"""

from __future__ import annotations

import socket
import threading
import time


class FaultProxy:
    """Forwards 127.0.0.1:port to a target; `down()` refuses new connections and drops open ones, `up()` restores;
    `latency` (seconds, 0 by default) delays every chunk forwarded in either direction: a slow store."""

    def __init__(self, target_host: str, target_port: int, port: int = 0):
        self.target = (target_host, target_port)
        self._sock = self._listen(port)
        self.port = self._sock.getsockname()[1]
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._serving = True
        self.latency = 0.0
        threading.Thread(target=self._accept_loop, args=(self._sock,), daemon=True).start()

    @staticmethod
    def _listen(port: int) -> socket.socket:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen(128)
        return sock

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _accept_loop(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # listener closed by down()
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns.update((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                if self.latency > 0:
                    time.sleep(self.latency)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
            with self._lock:
                self._conns.difference_update((src, dst))

    def down(self) -> None:
        """Connections are refused from now on and those open are cut."""
        if not self._serving:
            return
        self._serving = False
        try:
            self._sock.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept(); close() alone does not
        except OSError:
            pass
        self._sock.close()
        with self._lock:
            conns, self._conns = list(self._conns), set()
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()

    def up(self) -> None:
        if self._serving:
            return
        self._sock = self._listen(self.port)
        self._serving = True
        threading.Thread(target=self._accept_loop, args=(self._sock,), daemon=True).start()

    def close(self) -> None:
        self.down()
