"""Limits of `ragops serve`: how often one client may ask, how many model requests may wait, and
how long one may take (params.yaml `serve`).

- `RateLimits`: a token bucket per API key: `rate_limit_burst` requests at once, refilled at
  `rate_limit_per_minute`; over it a 429 with Retry-After, the seconds until the next token.
  Without keys the server listens on loopback only and nobody is told apart: no rate limit.
  Written here because it is ten lines on the event loop's clock; the rate-limit libraries for
  Starlette want a store (Redis, memcached) or decorate each route.
- `Admission`: model requests run one at a time (the holder's lock); at most `max_waiting` wait
  beside the one being answered, one more gets a 503 with Retry-After (the time the ones ahead
  should take) instead of a wait without bound. A request not answered within
  `request_timeout_seconds` gets a 503; if it had not reached the model yet, the model never
  starts it.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from components.config import ServeConfig
from components.serving.keys import KeyRing

T = TypeVar("T")
MAX_CLIENTS = 10_000  # buckets kept; past that, the full ones (idle keys) are dropped


class Refused(Exception):
    """A request refused by a limit: HTTP status, a message with the limit's params key, Retry-After."""

    def __init__(self, status: int, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.status, self.message, self.retry_after = status, message, max(1, math.ceil(retry_after))


class RateLimits:
    def __init__(self, config: ServeConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst, self.clock = config.rate_limit_per_minute / 60.0, config.rate_limit_burst, clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key name -> (tokens, when counted)

    def take(self, client: str) -> None:
        """One request of `client`, or Refused(429)."""
        if not self.rate:
            return
        now = self.clock()
        tokens, then = self._buckets.get(client, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - then) * self.rate)
        if tokens < 1.0:
            self._buckets[client] = (tokens, now)
            raise Refused(429, f"rate limit: {self.burst} requests at once and {self.rate * 60:g} a minute per "
                               "key (serve.rate_limit_burst, serve.rate_limit_per_minute); wait for Retry-After",
                          (1.0 - tokens) / self.rate)
        self._buckets[client] = (tokens - 1.0, now)
        if len(self._buckets) > MAX_CLIENTS:
            self._buckets = {c: (t, w) for c, (t, w) in self._buckets.items()
                             if t + (now - w) * self.rate < self.burst}


class Admission:
    def __init__(self, config: ServeConfig) -> None:
        self.max_waiting, self.timeout = config.max_waiting, config.request_timeout_seconds
        self._lock = threading.Lock()
        self.pending = 0  # model requests admitted and not finished (waiting, or being answered)
        self._seconds = 1.0  # a running mean of how long the model takes for one request

    def _busy_for(self) -> float:
        return self.pending * self._seconds

    async def run(self, call: Callable[[Callable[[Any], T]], tuple[str, T]], work: Callable[[Any], T]) -> tuple[str, T]:
        """`call(work)` (the holder's call: one at a time on the model) if the queue has room and
        within the timeout; else Refused(503)."""
        with self._lock:
            if self.pending > self.max_waiting:
                raise Refused(503, f"busy: {self.pending - 1} requests are waiting for the model (serve.max_waiting "
                                   f"{self.max_waiting}); send it again after Retry-After", self._busy_for())
            self.pending += 1
        deadline = time.monotonic() + self.timeout

        def timed(assistant: Any) -> T:
            if time.monotonic() > deadline:
                raise Refused(503, "timed out before the model was free", self._busy_for())
            tic = time.monotonic()
            try:
                return work(assistant)
            finally:
                self._seconds = 0.8 * self._seconds + 0.2 * (time.monotonic() - tic)

        def in_thread() -> tuple[str, T]:
            try:
                return call(timed)
            finally:
                with self._lock:
                    self.pending -= 1

        with anyio.move_on_after(self.timeout) as scope:
            # abandoned on timeout: the client hears now; the thread ends (or never starts the model) by itself
            result = await anyio.to_thread.run_sync(in_thread, abandon_on_cancel=True)
        if scope.cancelled_caught:
            raise timed_out(self.timeout, self._busy_for())
        return result


def timed_out(timeout: float, retry_after: float) -> Refused:
    """The 503 of a request not answered within `serve.request_timeout_seconds`."""
    return Refused(503, f"not answered within {timeout:g} s (serve.request_timeout_seconds): the server is busy; "
                        "send it again after Retry-After", retry_after)


def guard_v1(app: FastAPI, keys: KeyRing | None, rates: RateLimits) -> None:
    """With keys, before a /v1 request's body is read: its key (401, or 403 without the endpoint's
    scope), then the key's rate (429); /healthz and /readyz are neither checked nor counted."""

    @app.middleware("http")
    async def guard(request: Request, call_next: Callable) -> Any:
        # no keys: loopback only (keys.listen_host), nobody to tell apart
        if keys is None or not request.url.path.startswith("/v1/"):
            return await call_next(request)
        decision = keys.authorize(request.headers.get("authorization"), request.url.path)
        if decision.status != 200:
            headers = {"WWW-Authenticate": 'Bearer realm="ragops"'} if decision.status == 401 else None
            return JSONResponse({"error": decision.message}, status_code=decision.status, headers=headers)
        try:
            rates.take(decision.name)
        except Refused as exc:
            return JSONResponse({"error": exc.message}, status_code=429, headers={"Retry-After": str(exc.retry_after)})
        return await call_next(request)
