"""A hard deadline on one panel call, connect to last byte.

A socket timeout bounds each read, not the call: a panel that sends a byte every
half second never trips it, and holds a request for as long as it likes. So every
call runs under `WATCHDOG.guard(seconds)`, and one watchdog thread shuts down the
socket of a call still running at its deadline; the blocked read or write fails at
once, and the caller sees `Deadline.expired`.

The deadline holds the call's SOCKET, not just its connection: for an answer that
runs until close (`Connection: close`, or no length), http.client lets go of the
connection's socket (`sock = None`) and reads on from the socket's file, so a
connection no longer leads to the socket that is still being read. The sockets
reach the deadline through `DeadlineAdapter` (requests' HTTPAdapter with urllib3
pools and connections that report to the watchdog):

    pool lends a connection ─► it belongs to the call running in this context,
                               and so does its socket if it is already connected
    connection connects    ─► its new socket belongs to that call too
    pool takes it back     ─► it belongs to nobody: a later call reusing it is
                              never cut for an earlier call's deadline

A call past its deadline is cut again every RECHECK seconds until it ends: a TLS
connection's socket is handed over only once its handshake is done, and that
handshake is bounded by the connect timeout alone.
"""

from __future__ import annotations

import contextlib
import contextvars
import heapq
import itertools
import socket
import threading
import time
from typing import Any, Iterator

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

RECHECK = 0.05


class Deadline:
    """One call's deadline; `expired` once the watchdog has had to cut the call."""

    def __init__(self, at: float) -> None:
        self.at = at
        self.expired = False
        self.done = False
        self.sockets: dict[Any, Any] = {}  # connection lent to this call -> its socket, or None


_current: contextvars.ContextVar[Deadline | None] = contextvars.ContextVar("panel_call_deadline",
                                                                          default=None)


class Watchdog:
    """One thread for every call of the process; it sleeps until the earliest deadline."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._due: list[tuple[float, int, Deadline]] = []  # a heap, earliest first
        self._order = itertools.count()  # breaks ties: deadlines do not compare
        self._owner: dict[Any, Deadline] = {}  # connection -> the call it is lent to
        self._thread: threading.Thread | None = None

    @contextlib.contextmanager
    def guard(self, seconds: float) -> Iterator[Deadline]:
        """Cut whatever connection this context borrows if it is still busy after `seconds`."""
        deadline = Deadline(time.monotonic() + seconds)
        with self._lock:
            self._schedule(deadline, deadline.at)
        token = _current.set(deadline)
        try:
            yield deadline
        finally:
            _current.reset(token)
            with self._lock:
                deadline.done = True
                for connection in deadline.sockets:
                    if self._owner.get(connection) is deadline:
                        del self._owner[connection]
                deadline.sockets.clear()
                self._drop_finished()

    def lend(self, connection: Any) -> None:
        """`connection` now serves the call running in this context (if it has a deadline)."""
        deadline = _current.get()
        if deadline is not None:
            with self._lock:
                self._owner[connection] = deadline
                deadline.sockets[connection] = getattr(connection, "sock", None)

    def hold(self, connection: Any, sock: Any) -> None:
        """`connection` has just connected: its call's deadline keeps `sock` itself, which
        stays the one to cut even after the connection lets go of it."""
        with self._lock:
            deadline = self._owner.get(connection)
            if deadline is not None:
                deadline.sockets[connection] = sock
                if deadline.expired:
                    _shut(sock)

    def take_back(self, connection: Any) -> None:
        with self._lock:
            deadline = self._owner.pop(connection, None)
            if deadline is not None:
                deadline.sockets.pop(connection, None)

    def _schedule(self, deadline: Deadline, at: float) -> None:
        heapq.heappush(self._due, (at, next(self._order), deadline))
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="panel-deadline", daemon=True)
            self._thread.start()
        elif self._due[0][2] is deadline:
            self._lock.notify()

    def _drop_finished(self) -> None:
        while self._due and self._due[0][2].done:
            heapq.heappop(self._due)

    def _run(self) -> None:
        with self._lock:
            while True:
                self._drop_finished()
                if not self._due:
                    self._lock.wait()
                    continue
                at, _, deadline = self._due[0]
                wait = at - time.monotonic()
                if wait > 0:
                    self._lock.wait(wait)
                    continue
                heapq.heappop(self._due)
                deadline.expired = True
                for connection, sock in deadline.sockets.items():
                    if self._owner.get(connection) is deadline:
                        _shut(sock)
                self._schedule(deadline, time.monotonic() + RECHECK)  # until the call ends


def _shut(sock: Any) -> None:
    """Shut the socket down under whoever is blocked on it (not close: that thread owns it).
    Called on the plain socket type so that a TLS socket's state is left to its reader;
    TLS inside TLS (urllib3's SSLTransport, through an HTTPS proxy) is cut at its TCP socket."""
    while sock is not None and not isinstance(sock, socket.socket):
        sock = getattr(sock, "socket", None)
    if sock is None:
        return
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass  # already shut or closed, or not connected yet


WATCHDOG = Watchdog()


class _HeldConnection(HTTPConnection):
    """A urllib3 connection that hands each socket it connects to its call's deadline."""

    def connect(self) -> None:
        super().connect()
        WATCHDOG.hold(self, self.sock)


class _HeldHTTPSConnection(_HeldConnection, HTTPSConnection):
    pass


class _LendingPool(HTTPConnectionPool):
    """A urllib3 pool that tells the watchdog which call holds which connection."""

    ConnectionCls: type[HTTPConnection] = _HeldConnection

    def _get_conn(self, timeout: float | None = None) -> Any:
        connection = super()._get_conn(timeout)
        WATCHDOG.lend(connection)
        return connection

    def _put_conn(self, conn: Any) -> None:
        if conn is not None:
            WATCHDOG.take_back(conn)
        super()._put_conn(conn)


class _LendingHTTPSPool(_LendingPool, HTTPSConnectionPool):
    ConnectionCls = _HeldHTTPSConnection


_POOLS: dict[str, type[HTTPConnectionPool]] = {"http": _LendingPool, "https": _LendingHTTPSPool}


class DeadlineAdapter(HTTPAdapter):
    """requests' adapter whose connections can be cut by `WATCHDOG`."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if not proxy.lower().startswith("socks"):  # SOCKS managers bring pools of their own
            manager.pool_classes_by_scheme = _POOLS
        return manager
