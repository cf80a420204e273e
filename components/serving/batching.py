"""Concurrent `/v1/answer` requests answered together: one generate call for what arrives while
the model is busy (or within `serve.batch_window_ms` of an idle model), up to
`serve.max_batch_size` questions. The generator reads a batch of prompts in about the time of one
on 2 CPU cores, so under load answers per second rise and waits shrink
(`benchmarks/serve_batching.py` measures it against the one-at-a-time server).

Only requests without filters are batched: a filter the champion's index cannot apply fails its
own request, never its neighbours'. Each request keeps its own timeout and the queue its bound
(`serve.max_waiting`; components/serving/limits.py): a request timed out before its batch left is
taken out and never reaches the model.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from starlette.concurrency import run_in_threadpool

from components.config import ServeConfig
from components.serving.limits import Admission, Refused, timed_out


class AnswerBatcher:
    def __init__(self, config: ServeConfig, admission: Admission, call: Callable, answer: Callable[[Any, list], Any],
                 trace: Callable[[str, Any], list[dict]]) -> None:
        """`call(work)` runs work on the model (the holder's call), `answer(assistant, items)` answers a
        batch, `trace(version, answered)` makes its rows (one per item) once the model is free."""
        self.window, self.max_size = config.batch_window_ms / 1000.0, config.max_batch_size
        self.timeout, self.max_waiting = config.request_timeout_seconds, config.max_waiting
        self.admission, self.call, self.answer, self.trace = admission, call, answer, trace
        self.pending: list[tuple[Any, asyncio.Future]] = []
        self._arrived: asyncio.Event | None = None
        self._consumer: asyncio.Task | None = None
        self.batches: list[int] = []  # sizes of the batches sent to the model (the benchmark reads them)

    async def submit(self, item: Any) -> tuple[str, dict]:
        """(bundle version, the answer row of `item`), or the batch's failure, or Refused(503)."""
        if self._consumer is None:
            self._arrived = asyncio.Event()
            self._consumer = asyncio.create_task(self._consume())
        if len(self.pending) >= self.max_waiting + self.max_size:
            raise Refused(503, f"busy: {len(self.pending)} answers are waiting for the model (serve.max_waiting "
                               f"{self.max_waiting} + serve.max_batch_size {self.max_size}); send it again after "
                               "Retry-After", 1 + len(self.pending) / self.max_size)
        entry = (item, asyncio.get_running_loop().create_future())
        self.pending.append(entry)
        self._arrived.set()
        try:
            return await asyncio.wait_for(asyncio.shield(entry[1]), self.timeout)
        except TimeoutError:
            if entry in self.pending:
                self.pending.remove(entry)  # not sent yet: never reaches the model
            raise timed_out(self.timeout, 1 + len(self.pending) / self.max_size) from None

    async def _consume(self) -> None:
        while True:
            await self._arrived.wait()
            await asyncio.sleep(self.window)  # a few milliseconds for the neighbours of a lone request
            batch, self.pending = self.pending[: self.max_size], self.pending[self.max_size:]
            if not self.pending:
                self._arrived.clear()
            if batch:
                await self._answer(batch)

    async def _answer(self, batch: list[tuple[Any, asyncio.Future]]) -> None:
        self.batches.append(len(batch))
        items = [item for item, _ in batch]
        try:
            version, answered = await self.admission.run(self.call, lambda assistant: self.answer(assistant, items))
            rows = await run_in_threadpool(self.trace, version, answered)
        except Exception as exc:  # noqa: BLE001 (handed to each request of the batch, which answers with its status)
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), row in zip(batch, rows, strict=True):
            if not future.done():
                future.set_result((version, row))
