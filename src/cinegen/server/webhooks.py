"""Webhooks as OpenAI sends them: `video.completed` / `video.failed` events, signed with the Standard Webhooks
scheme the SDK's `client.webhooks.unwrap(body, headers, secret=...)` verifies (webhook-id, webhook-timestamp,
webhook-signature: "v1," + base64 HMAC-SHA256 of "id.timestamp.body"; a "whsec_" secret is base64).

Workers only write an event row when a job finishes (the outbox, in the same transaction); this sender, a thread
of the app process, posts due events and retries failures with exponential backoff, so a slow or dead receiver
never holds up a render.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import threading
import time

from cinegen.server.store import JobStore

log = logging.getLogger(__name__)
BACKOFF = (5.0, 30.0, 120.0, 600.0, 1800.0, 3600.0)     # seconds before attempts 2, 3, ...; then it gives up


def sign(secret: str, msg_id: str, timestamp: int, payload: bytes) -> str:
    key = base64.b64decode(secret[6:]) if secret.startswith("whsec_") else secret.encode()
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + payload, hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


def payload(event: dict) -> bytes:
    return json.dumps({"id": event["id"], "object": "event", "created_at": event["created_at"], "type": event["type"],
                       "data": {"id": event["video_id"]}}, separators=(",", ":")).encode()


def headers(event: dict, body: bytes, secret: str | None, now: int) -> dict:
    out = {"content-type": "application/json", "user-agent": "cinegen-webhooks", "webhook-id": event["id"],
           "webhook-timestamp": str(now)}
    if secret:
        out["webhook-signature"] = sign(secret, event["id"], now, body)
    return out


class Sender:
    def __init__(self, store: JobStore, url: str, secret: str | None, timeout: float = 10.0,
                 backoff: tuple[float, ...] = BACKOFF, poll: float = 0.5):
        self.store, self.url, self.secret, self.timeout, self.backoff, self.poll = store, url, secret, timeout, backoff, poll

    def deliver_due(self, now: float | None = None) -> int:
        """Posts every due event once; returns how many were delivered."""
        import httpx
        now = time.time() if now is None else now
        delivered = 0
        for event in self.store.due_events(now):
            body = payload(event)
            try:
                r = httpx.post(self.url, content=body, headers=headers(event, body, self.secret, int(time.time())),
                               timeout=self.timeout)
                ok, error = 200 <= r.status_code < 300, f"HTTP {r.status_code}"
            except httpx.HTTPError as e:
                ok, error = False, f"{type(e).__name__}: {e}"
            attempt = event["attempts"]              # attempts before this one
            if ok:
                self.store.event_result(event["id"], True, now)
                delivered += 1
            elif attempt < len(self.backoff):
                self.store.event_result(event["id"], False, now + self.backoff[attempt], error)
            else:
                log.warning("webhook %s gave up after %d attempts: %s", event["id"], attempt + 1, error)
                self.store.event_result(event["id"], False, float("inf"), error)
        return delivered

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.deliver_due()
            except Exception:
                log.exception("webhook delivery failed; trying again")
            stop.wait(self.poll)
