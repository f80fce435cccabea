"""A fault-injecting TCP proxy for tests: delay, rate cap, cut after N bytes, resets, corruption.

Sits on 127.0.0.1 between boto3 and the moto server. Linux netem is not
available here, and a proxy we control makes every fault deterministic:
faults trigger on byte counts, never on timing.
"""

from __future__ import annotations

import contextlib
import re
import socket
import struct
import threading
import time

__all__ = ["FaultProxy"]


def _reset(sock: socket.socket) -> None:
    """Drop the connection as a failing WAN link does. SO_LINGER 0 makes the close an RST;
    the shutdown first wakes a pump thread blocked reading the same socket (a bare close
    from another thread would not)."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


class FaultProxy:
    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._closed = False
        # Faults (set by tests):
        self.delay = 0.0  # seconds added before forwarding each block (latency)
        self.rate: float | None = None  # bytes/s cap on each direction, across connections
        self.cut_after_up: int | None = None  # reset everything once this many more bytes go up
        self.cut_after_down: int | None = None  # ... or come down
        self.down = False  # the link is down: every new connection is reset at once
        self.down_after_cut = False  # a cut also takes the link down (until heal())
        self.corrupt_down_after: int | None = None  # flip one byte this far into the downstream
        self.strip_if_none_match = False  # drop the header, as a store that ignores it would
        # Reset everything instead of forwarding a request whose first line matches one of
        # these; each pattern fires once (e.g. rb"DELETE /bucket/prefix/\.claims/").
        self.reset_requests: list[re.Pattern[bytes]] = []
        self.resets = 0  # connections reset by a fault
        # Counters:
        self.bytes_up = 0
        self.bytes_down = 0
        self._rate_clock = {"up": time.monotonic(), "down": time.monotonic()}
        threading.Thread(target=self._accept, name="faultproxy", daemon=True).start()

    # -- control --------------------------------------------------------------------

    def heal(self) -> None:
        with self._lock:
            self.down = False
            self.cut_after_up = self.cut_after_down = None
            self.corrupt_down_after = None

    def cut_all(self) -> None:
        with self._lock:
            conns = list(self._conns)
            self._conns.clear()
        for conn in conns:
            _reset(conn)
        self.resets += len(conns)

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._listener.close()
        self.cut_all()

    # -- plumbing -------------------------------------------------------------------

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.down:
                _reset(client)
                self.resets += 1
                continue
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                _reset(client)
                continue
            with self._lock:
                self._conns.update((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream, "up"), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, "down"),
                             daemon=True).start()

    def _pace(self, direction: str, n: int) -> None:
        rate = self.rate
        if rate is None:
            return
        with self._lock:
            start = max(self._rate_clock[direction], time.monotonic())
            self._rate_clock[direction] = start + n / rate
        wait = start + n / rate - time.monotonic()
        if wait > 0:
            time.sleep(wait)

    def _pump(self, src: socket.socket, dst: socket.socket, direction: str) -> None:
        try:
            while True:
                block = src.recv(65536)
                if not block:
                    break
                if self.delay:
                    time.sleep(self.delay)
                block, cut = self._apply(direction, block)
                self._pace(direction, len(block))
                if block:
                    dst.sendall(block)
                if cut:
                    self._cut()
                    return
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)
        except OSError:
            _reset(src)
            _reset(dst)
        finally:
            with self._lock:
                self._conns.discard(src)

    def _apply(self, direction: str, block: bytes) -> tuple[bytes, bool]:
        """Count the block and apply one-shot faults: (bytes to forward, cut after them)."""
        with self._lock:
            cut = False
            if direction == "up" and self.strip_if_none_match:
                block = re.sub(rb"(?i)\r\nif-none-match: ?\*", b"", block)
            if direction == "up":
                for pattern in self.reset_requests:
                    if pattern.match(block):
                        self.reset_requests.remove(pattern)
                        return b"", True
            if direction == "up":
                if self.cut_after_up is not None:
                    if len(block) >= self.cut_after_up:
                        block, cut = block[: self.cut_after_up], True
                        self.cut_after_up = None
                    else:
                        self.cut_after_up -= len(block)
                self.bytes_up += len(block)
            else:
                if self.cut_after_down is not None:
                    if len(block) >= self.cut_after_down:
                        block, cut = block[: self.cut_after_down], True
                        self.cut_after_down = None
                    else:
                        self.cut_after_down -= len(block)
                if self.corrupt_down_after is not None:
                    if self.corrupt_down_after < len(block):
                        i = self.corrupt_down_after
                        block = block[:i] + bytes([block[i] ^ 0x55]) + block[i + 1 :]
                        self.corrupt_down_after = None
                    else:
                        self.corrupt_down_after -= len(block)
                self.bytes_down += len(block)
            if cut and self.down_after_cut:
                self.down = True
            return block, cut

    def _cut(self) -> None:
        self.cut_all()
