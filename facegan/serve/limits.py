"""Admission control for `facegan serve`: the limits' settings and the cost budget of the expensive routes.

A request's cost is the pixels it makes, in megapixels: frames × side² for a walk, n × side² for a
grid, side² for a face, where side is the larger of the output and the generator's native size. CPU
time and memory of drawing, resizing and encoding grow with it (a 60-frame 512 px Lanczos GIF is
15.7 Mpx: ~0.4-0.7 s of CPU and ~40 MB while it is made). Work is admitted against a budget held by
each server process: `total` megapixels in flight for everyone, of which one client (see
`client_key`) may hold at most `per_client`. A client over its share is refused at once; a request
that would overflow the shared budget waits, first come first served, up to `max_wait` seconds for
room. Refused requests get 429 with Retry-After.

Pure asyncio: nothing here needs the web server, so `facegan.serve.build_app` can use it alone, and
`facegan serve`'s flags are generated from `ServeLimits` without importing it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import math
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from facegan.config.check import setting
from facegan.errors import FaceganError

_EPS = 1e-9  # costs are sums of floats; compare with a little slack


def _ip_list(text: str) -> tuple[str, ...]:
    """--forwarded-allow-ips' text: comma-separated entries, blanks ignored."""
    return tuple(ip.strip() for ip in text.split(",") if ip.strip())


@dataclass(frozen=True)
class ServeLimits:
    """Everything `facegan serve` bounds, per server process (`--workers N` multiplies each by N).
    Each field is also a flag of `facegan serve` (facegan/cli/flags.py)."""

    header_timeout: float = setting(
        10.0,
        "seconds a connection may take to send a whole request head, "
        "from connecting or from the previous answer, and may wait between two "
        "reads of a body; then it is closed",
        metavar="S",
    )
    send_timeout: float = setting(
        60.0, "drop a connection whose client reads nothing for S seconds", metavar="S"
    )
    keep_alive: int = setting(
        5,
        "seconds an idle keep-alive connection stays open (the server has one "
        "idle timer: the smaller of this and --header-timeout)",
        metavar="S",
    )
    requests_in_flight: int = setting(
        256, "requests being answered at once, all clients together; more get a quick 503", metavar="N"
    )
    requests_per_client: int = setting(
        32,
        "requests being answered at once for one client address (IPv6: per /64); more get a 429; 0 = no cap",
        metavar="N",
    )
    max_target: int = setting(
        8192, "bytes of request target (path and query); longer gets a 414", metavar="BYTES"
    )
    max_header_bytes: int = setting(
        16384, "bytes of request header fields in all; more get a 431", metavar="BYTES"
    )
    max_headers: int = setting(100, "request header fields; more get a 431", metavar="N")
    budget_mpix: float = setting(
        64.0,
        "megapixels of images being made at once, all clients together; more waits, then gets a 429",
        metavar="MPX",
    )
    client_budget_mpix: float = setting(16.0, "megapixels one client may have in the making", metavar="MPX")
    budget_wait: float = setting(
        2.0, "seconds a request may wait for room in the shared budget before a 429", metavar="S"
    )
    forwarded_allow_ips: tuple[str, ...] = setting(
        (),
        "comma-separated proxy addresses/networks (or *) whose X-Forwarded-For names the client; they "
        "then count per forwarded client",
        metavar="IPS",
        parse=_ip_list,
    )

    def __post_init__(self) -> None:
        for name in ("header_timeout", "send_timeout", "budget_mpix", "client_budget_mpix"):
            if not getattr(self, name) > 0:
                raise FaceganError(f"--{name.replace('_', '-')} must be > 0, got {getattr(self, name)}")
        for name in ("max_target", "max_header_bytes", "max_headers"):
            if (value := getattr(self, name)) < 1:
                raise FaceganError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
        if self.keep_alive < 1:
            raise FaceganError(f"--keep-alive must be at least 1 s, got {self.keep_alive}")
        if self.requests_in_flight < 1:
            raise FaceganError(f"--requests-in-flight must be at least 1, got {self.requests_in_flight}")
        if self.requests_per_client < 0:
            raise FaceganError(
                f"--requests-per-client must be >= 0 (0 = no cap), got {self.requests_per_client}"
            )
        if self.budget_wait < 0:
            raise FaceganError(f"--budget-wait must be >= 0, got {self.budget_wait}")
        if self.client_budget_mpix > self.budget_mpix:
            raise FaceganError(
                f"--client-budget-mpix ({self.client_budget_mpix:g}) must not exceed "
                f"--budget-mpix ({self.budget_mpix:g})"
            )
        for entry in self.forwarded_allow_ips:
            if entry != "*":
                try:
                    ipaddress.ip_network(entry, strict=False)
                except ValueError:
                    raise FaceganError(
                        f"--forwarded-allow-ips: {entry!r} is not an IP address, a network or '*'"
                    ) from None

    def budget(self) -> CostBudget:
        return CostBudget(self.budget_mpix, self.client_budget_mpix, self.budget_wait)


def client_key(host: str | None) -> str:
    """The key per-client limits are kept under: the IPv4 address, or the /64 of an IPv6 one (a
    subscriber usually holds a whole /64, so counting single v6 addresses would be trivial to dodge)."""
    if not host:
        return "unknown"
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def image_cost(images: int, side: int, native: int) -> float:
    """Estimated cost in megapixels of `images` images of `side` px from a `native` px generator
    (shrinking still draws, and filters, the native pixels)."""
    px = max(side, native)
    return images * px * px / 1e6


class OverBudget(Exception):
    """A request refused by the cost budget; the server answers 429 with Retry-After."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class CostBudget:
    """A weighted semaphore with a per-client cap and a bounded, first-come-first-served wait.

    Used from one event loop only (no locks): every method runs between two awaits."""

    def __init__(self, total: float, per_client: float, max_wait: float) -> None:
        if not 0 < per_client <= total or max_wait < 0:
            raise ValueError("need 0 < per_client <= total and max_wait >= 0")
        self.total, self.per_client, self.max_wait = total, per_client, max_wait
        self.used = 0.0
        self._by_client: dict[str, float] = {}
        self._waiters: deque[tuple[float, asyncio.Future[None]]] = deque()

    @property
    def clients(self) -> int:
        """Clients holding (or queueing for) part of the budget now."""
        return len(self._by_client)

    @asynccontextmanager
    async def admit(self, client: str, cost: float) -> AsyncIterator[None]:
        """Hold `cost` of the budget for the body of the `async with`; OverBudget if refused."""
        # A request bigger than a client's share is charged the whole share: it runs, but alone.
        cost = min(max(cost, 0.0), self.per_client)
        held = self._by_client.get(client, 0.0)
        if held + cost > self.per_client + _EPS:
            raise OverBudget("too many expensive requests from your address at once; retry in a moment", 1)
        # The client's share is taken while it queues too, so queued requests count against it.
        self._by_client[client] = held + cost
        try:
            await self._take(cost)
            try:
                yield
            finally:
                self._give(cost)
        finally:
            left = self._by_client[client] - cost
            if left > _EPS:
                self._by_client[client] = left
            else:
                del self._by_client[client]

    async def _take(self, cost: float) -> None:
        if not self._waiters and self.used + cost <= self.total + _EPS:
            self.used += cost
            return
        retry = max(1, math.ceil(self.max_wait))
        if self.max_wait == 0:
            raise OverBudget(f"server busy; retry in {retry} s", retry)
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (cost, fut)
        self._waiters.append(entry)
        granted = False
        try:
            await asyncio.wait((fut,), timeout=self.max_wait)  # never cancels fut itself
            granted = fut.done()
        finally:
            if not granted:  # timed out, or the request was cancelled (client went away)
                if fut.done():  # granted in the same tick as the cancellation: hand it back
                    self._give(cost)
                else:
                    fut.cancel()
                    self._waiters.remove(entry)
                    self._wake()  # it may have been the head of the queue, blocking the others
        if not granted:
            raise OverBudget(f"server busy; retry in {retry} s", retry)

    def _give(self, cost: float) -> None:
        self.used = max(0.0, self.used - cost)
        self._wake()

    def _wake(self) -> None:
        # Strictly in order: letting small requests overtake could starve a big one forever.
        while self._waiters and self.used + self._waiters[0][0] <= self.total + _EPS:
            cost, fut = self._waiters.popleft()
            self.used += cost
            fut.set_result(None)
