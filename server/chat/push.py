"""Offline push hook: hand notification jobs to the platform's push service over a signed webhook.

A job is `{"id", "type", "user", "data", "created_at"}` POSTed as JSON to PAIRLY_PUSH_WEBHOOK_URL
with headers `X-Pairly-Job-Id: <id>` and `X-Pairly-Signature: sha256=<hex HMAC-SHA256 of the raw
body with PAIRLY_PUSH_WEBHOOK_SECRET>`. Any 2xx is success; 4xx other than 408/429 is final; other
failures are retried with exponential backoff (jittered, capped) up to the configured attempts.
Jobs are deduplicated by id in this process (the receiver should also dedupe by the header: a
retry after a lost response repeats a job). Enqueueing never blocks or awaits: the send path only
appends to a bounded queue drained by one worker task.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import random
from collections import OrderedDict
from typing import Any

import aiohttp
import structlog

from server.chat.config import PushSettings
from server.chat.model import iso, now

log = structlog.get_logger(__name__)

_DEDUPE_WINDOW = 50_000


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class PushService:
    def __init__(self, settings: PushSettings) -> None:
        self._settings = settings
        self._queue: asyncio.Queue[tuple[str, bytes]] | None = None
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._worker: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._inflight: set[asyncio.Task[None]] = set()
        self.sent = 0
        self.failed = 0
        self.dropped = 0

    @property
    def enabled(self) -> bool:
        return self._settings.enabled

    async def start(self) -> None:
        if not self.enabled:
            return
        self._queue = asyncio.Queue(self._settings.queue_size)
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self._settings.timeout_s))
        self._worker = asyncio.create_task(self._run(), name="chat-push")

    async def stop(self, timeout_s: float = 2.0) -> None:
        if self._worker is not None:
            if self._queue is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._queue.join(), timeout_s)
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        for task in list(self._inflight):
            task.cancel()
        if self._inflight:
            await asyncio.gather(*self._inflight, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    def notify(self, job_id: str, user: str, kind: str, data: dict[str, Any]) -> bool:
        """Queue a job (no await). False when disabled, already seen, or the queue is full."""
        if self._queue is None or job_id in self._seen:
            return False
        self._seen[job_id] = None
        if len(self._seen) > _DEDUPE_WINDOW:
            self._seen.popitem(last=False)
        body = json.dumps({"id": job_id, "type": kind, "user": user, "data": data, "created_at": iso(now())},
                          separators=(",", ":")).encode()
        try:
            self._queue.put_nowait((job_id, body))
        except asyncio.QueueFull:
            self.dropped += 1
            log.warning("push_queue_full", job=job_id)
            return False
        return True

    async def _run(self) -> None:
        assert self._queue is not None
        while True:
            job_id, body = await self._queue.get()
            # Each job runs on its own task so a slow or retrying job never holds up the others.
            task = asyncio.create_task(self._deliver(job_id, body), name="chat-push-job")
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)
            self._queue.task_done()

    async def _deliver(self, job_id: str, body: bytes) -> None:
        settings = self._settings
        assert self._session is not None and settings.url is not None and settings.secret is not None
        headers = {"Content-Type": "application/json", "X-Pairly-Job-Id": job_id,
                   "X-Pairly-Signature": sign(settings.secret, body)}
        delay = settings.backoff_s
        for attempt in range(1, settings.max_attempts + 1):
            status: int | None = None
            try:
                async with self._session.post(settings.url, data=body, headers=headers) as resp:
                    status = resp.status
                    await resp.read()
            except (aiohttp.ClientError, TimeoutError) as exc:
                log.info("push_attempt_failed", job=job_id, attempt=attempt, error=type(exc).__name__)
            if status is not None:
                if 200 <= status < 300:
                    self.sent += 1
                    return
                if 400 <= status < 500 and status not in (408, 429):
                    break
                log.info("push_attempt_failed", job=job_id, attempt=attempt, status=status)
            if attempt < settings.max_attempts:
                await asyncio.sleep(min(settings.backoff_max_s, delay) * (0.8 + 0.4 * random.random()))
                delay *= 2
        self.failed += 1
        log.warning("push_failed", job=job_id)
