"""A TCP forwarder on a fixed loopback port that can take the service behind it down and up.

`down()` closes the listening socket (new connections are refused) and resets every open
connection, keep-alive ones included, as a crashed server would; `hang()` resets them too but
then accepts new connections and never answers them, like a hung host (they stay unanswered
after `up()`, until `close()`); `up()` serves again on the same port. The service behind it
keeps its state, like a real one after an outage.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading

from tests.net import free_port


class OutageSwitch:
    """Forwards 127.0.0.1:`port` to `target` (host, port) while up."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._silenced: list[socket.socket] = []
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _listen(self) -> socket.socket:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        return listener

    def up(self) -> OutageSwitch:
        self._serve(forward=True)
        return self

    def hang(self) -> None:
        self._serve(forward=False)

    def _serve(self, *, forward: bool) -> None:
        self.down()
        listener = self._listen()
        self._listener = listener
        self._thread = threading.Thread(target=self._accept, args=(listener, forward), daemon=True)
        self._thread.start()

    @property
    def hung_connections(self) -> int:
        """How many connections `hang()` has accepted and left unanswered."""
        with self._lock:
            return len(self._silenced)

    def close(self) -> None:
        """Down, and the connections `hang()` accepted are reset too."""
        self.down()
        with self._lock:
            silenced, self._silenced = self._silenced, []
        for sock in silenced:
            sock.close()

    def down(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._lock:
            doomed, self._open = self._open, set()
        for sock in doomed:
            with contextlib.suppress(OSError):
                # SO_LINGER 0: a RST, as from a killed server; shutdown wakes a blocked recv
                # (close alone would leave the pump holding the socket open).
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self, listener: socket.socket, forward: bool) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            if not forward:
                with self._lock:
                    self._silenced.append(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                if self._listener is not listener:
                    client.close()
                    upstream.close()
                    return
                self._open.update((client, upstream))
            pumps = [2]  # the last pump to stop closes both sockets
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink, pumps), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, pumps: list[int]) -> None:
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)
        with self._lock:
            pumps[0] -= 1
            last = pumps[0] == 0
            if last:
                self._open.discard(source)
                self._open.discard(sink)
        if last:
            source.close()
            sink.close()
