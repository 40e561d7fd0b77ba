"""Figure 6: webhook delivery, from an event's publishing to its arrival at a loopback receiver.

Everything is the code `make run` runs: the webhook sink writes the delivery and its
SQS message (moto on loopback), the local run's poller (local.run.WebhookPoller, the
stand-in for Lambda's SQS event source) hands each message to the worker, and the
worker makes the signed POST. The status sync's interval is not part of it: the clock
starts when the event is published.

- latency: one event at a time, publish → the receiver has the request; p50 / p99.
  Floor: the same POST sent straight to the receiver.
- throughput: a burst of events published first, then one worker (one poller thread)
  drains them against a receiver that answers at once; deliveries per second.
"""

from __future__ import annotations

import statistics
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import requests


class _Receiver(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # As a receiver behind a real server: without it, each answer waits ~40 ms for the
    # client's delayed ACK of its headers (Nagle), on both the figure and its floor.
    disable_nagle_algorithm = True
    arrived: dict[str, float]
    all_in: threading.Event
    expected: list[int]

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.arrived[self.headers.get("webhook-id") or "-"] = time.perf_counter()
        if len(self.arrived) >= self.expected[0]:
            self.all_in.set()
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: object) -> None:
        pass


def measure(events: int, burst: int) -> dict[str, Any]:
    from chalicelib.events import model
    from chalicelib.webhooks.deliveries import DynamoDeliveries
    from chalicelib.webhooks.queue import Message, SqsQueue
    from chalicelib.webhooks.sender import Sender
    from chalicelib.webhooks.sink import WebhookSink
    from chalicelib.webhooks.subscriptions import DynamoSubscriptions, Subscriptions
    from chalicelib.webhooks.targets import Targets
    from chalicelib.webhooks.worker import Worker
    from local.aws import TABLE, EmbeddedAws, create_queue, create_table
    from local.run import WebhookPoller, quiet_embedded_services

    quiet_embedded_services()
    aws = EmbeddedAws().start()
    arrived: dict[str, float] = {}
    all_in = threading.Event()
    expected = [1]
    handler = type("Receiver", (_Receiver,), {"arrived": arrived, "all_in": all_in, "expected": expected})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    stopped = threading.Event()
    try:
        dynamodb, sqs = aws.client("dynamodb"), aws.client("sqs")
        create_table(dynamodb, TABLE)
        queue = SqsQueue(sqs, create_queue(sqs))
        subscriptions, deliveries = DynamoSubscriptions(dynamodb, TABLE), DynamoDeliveries(dynamodb, TABLE)
        targets = Targets(allow_private=True)
        sink = WebhookSink(subscriptions, deliveries, queue)
        worker = Worker(subscriptions, deliveries, queue, targets, Sender())
        Subscriptions(subscriptions, targets, sink.publish).create("bench", {"url": url, "events": ["*"]})

        def handle(event: dict[str, Any], context: Any) -> None:
            for record in event["Records"]:
                worker.handle(Message.read(record["body"]))

        poller = WebhookPoller(sqs, queue.url, handle, wait_seconds=1)
        thread = threading.Thread(target=poller.run, args=(stopped,), daemon=True)
        thread.start()

        session = requests.Session()
        floor = []
        for n in range(events):
            started = time.perf_counter()
            session.post(url, data=b"{}", headers={"webhook-id": f"floor-{n}"}, timeout=10)
            floor.append(time.perf_counter() - started)
        arrived.clear()
        latencies = []
        for n in range(events):
            expected[0] = n + 1
            all_in.clear()
            event = model.new("bench", "order.completed", {"id": n, "state": "completed"})
            started = time.perf_counter()
            sink.publish([event])
            if not all_in.wait(30):
                raise RuntimeError(f"event {n} was not delivered within 30 s")
            latencies.append(arrived[event.id] - started)

        stopped.set()
        thread.join(timeout=10)
        arrived.clear()
        expected[0] = burst
        all_in.clear()
        sink.publish([model.new("bench", "order.completed", {"id": n}) for n in range(burst)])
        stopped.clear()
        started = time.perf_counter()
        thread = threading.Thread(target=poller.run, args=(stopped,), daemon=True)
        thread.start()
        if not all_in.wait(600):
            raise RuntimeError(f"the burst of {burst} was not delivered within 600 s")
        drained = time.perf_counter() - started
    finally:
        stopped.set()
        server.shutdown()
        server.server_close()
        aws.stop()
    p50, p99 = _percentile(latencies, 50), _percentile(latencies, 99)
    floor_p50 = _percentile(floor, 50)
    return {"events": events, "p50_ms": round(p50 * 1000, 1), "p99_ms": round(p99 * 1000, 1),
            "floor_p50_ms": round(floor_p50 * 1000, 2), "burst": burst,
            "per_second": round(burst / drained, 1), "burst_seconds": round(drained, 2)}


def _percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    return statistics.quantiles(ordered, n=100, method="inclusive")[int(pct) - 1] if pct < 100 else ordered[-1]


if __name__ == "__main__":
    print(measure(50, 100))
