"""The delivery queue: one SQS message per attempt to make, read by the worker.

A message names a delivery and the attempt it is for; it carries no secret and no
payload (the delivery holds the body). SQS delays stop at MAX_DELAY seconds: a
longer wait is sent with that delay and the worker sends it on again until the
delivery's `next_attempt_at` (see worker.py).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from chalicelib import errors

MAX_DELAY = 900


@dataclass(frozen=True)
class Message:
    caller: str
    webhook_id: str
    delivery_id: str
    attempt: int

    def text(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"), sort_keys=True)

    @classmethod
    def read(cls, text: str) -> "Message":
        data = json.loads(text)
        return cls(caller=str(data["caller"]), webhook_id=str(data["webhook_id"]),
                   delivery_id=str(data["delivery_id"]), attempt=int(data["attempt"]))


class Queue(Protocol):
    def send(self, message: Message, delay: float = 0) -> None:
        """Enqueue `message`, visible after `delay` seconds (capped at MAX_DELAY); raise on failure."""


class SqsQueue:
    def __init__(self, client: Any, url: str) -> None:
        self._client = client
        self.url = url

    def send(self, message: Message, delay: float = 0) -> None:
        seconds = max(0, min(MAX_DELAY, int(-(-delay // 1))))  # whole seconds, rounded up
        try:
            self._client.send_message(QueueUrl=self.url, MessageBody=message.text(), DelaySeconds=seconds)
        except Exception as exc:
            raise errors.QueueUnavailable("SQS did not take the delivery message.") from exc
