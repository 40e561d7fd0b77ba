"""The /webhooks routes: subscribing, reading, unsubscribing, test events, the delivery log.

Deliveries go through the real queue (moto's SQS) and the same function the deployed
consumer runs, polled as `make run` polls it (local.run.WebhookPoller), to a loopback
receiver that checks every signature with the `standardwebhooks` package.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook as Verifier
from standardwebhooks.webhooks import WebhookVerificationError

from local.aws import EmbeddedAws
from local.run import WebhookPoller
from tests.conftest import OTHER_KEY
from tests.loopback import Delivered, webhook_receiver

PUBLIC_URL = "https://93.184.215.14/hooks/1"  # an address literal: no DNS in tests


@pytest.fixture
def local_targets(monkeypatch: pytest.MonkeyPatch) -> None:
    """As under `make run`: http and loopback targets are allowed."""
    monkeypatch.setenv("WEBHOOK_ALLOW_PRIVATE_TARGETS", "true")


def subscribe(client: Any, url: str, events: list[str] | None = None, **kw: Any) -> Any:
    return client.post("/webhooks", json_body={"url": url, "events": events or ["*"], "description": "t"}, **kw)


def drain(aws: EmbeddedAws, gateway: Any) -> int:
    """Run the worker on every message in the queue now (and those it enqueues without delay)."""
    poller = WebhookPoller(aws.client("sqs"), os.environ["WEBHOOK_QUEUE_URL"], gateway.deliver_webhooks,
                           wait_seconds=0)
    handled = 0
    while count := poller.poll_once():
        handled += count
    return handled


def verified(secret: str, request: Delivered) -> dict[str, Any]:
    """The event, if the third-party verifier accepts the request's signature."""
    return Verifier(secret).verify(request.body, request.headers)  # type: ignore[no-any-return]


# -- subscriptions ----------------------------------------------------------------------


def test_subscribing_answers_201_with_a_secret_and_the_location_to_delete(client: Any) -> None:
    answer = subscribe(client, PUBLIC_URL, ["order.*"])

    assert answer.status_code == 201
    webhook = json.loads(answer.body)
    assert webhook["id"].startswith("wh_") and webhook["status"] == "enabled"
    assert webhook["events"] == ["order.*"] and webhook["url"] == PUBLIC_URL
    assert webhook["secret"].startswith("whsec_")
    assert answer.headers["Location"].endswith(f"/webhooks/{webhook['id']}")
    assert client.delete(f"/webhooks/{webhook['id']}").status_code == 204
    assert client.get(f"/webhooks/{webhook['id']}").status_code == 404


def test_the_secret_is_shown_by_id_but_not_in_the_list(client: Any) -> None:
    created = json.loads(subscribe(client, PUBLIC_URL).body)

    listed = json.loads(client.get("/webhooks").body)["webhooks"]
    read = json.loads(client.get(f"/webhooks/{created['id']}").body)

    assert [w["id"] for w in listed] == [created["id"]] and "secret" not in listed[0]
    assert read["secret"] == created["secret"]


def test_listing_by_url_finds_exactly_that_subscription_for_n8ns_check_exists(client: Any) -> None:
    subscribe(client, PUBLIC_URL)
    other = json.loads(subscribe(client, "https://93.184.215.14/hooks/2").body)

    found = json.loads(client.get("/webhooks?url=https%3A%2F%2F93.184.215.14%2Fhooks%2F2").body)["webhooks"]
    none = json.loads(client.get("/webhooks?url=https%3A%2F%2F93.184.215.14%2Fhooks%2F3").body)["webhooks"]

    assert [w["id"] for w in found] == [other["id"]] and none == []


def test_a_caller_may_hold_25_subscriptions_and_the_26th_is_refused(client: Any) -> None:
    for n in range(25):
        assert subscribe(client, f"{PUBLIC_URL}/{n}").status_code == 201

    refused = subscribe(client, PUBLIC_URL)

    assert refused.status_code == 422
    assert json.loads(refused.body)["error"]["code"] == "webhook_limit_reached"
    first = json.loads(client.get("/webhooks").body)["webhooks"][0]
    assert client.delete(f"/webhooks/{first['id']}").status_code == 204
    assert subscribe(client, PUBLIC_URL).status_code == 201  # a deletion frees a place


def test_another_caller_can_neither_see_nor_touch_a_subscription(client: Any) -> None:
    created = json.loads(subscribe(client, PUBLIC_URL).body)
    wh = created["id"]

    assert json.loads(client.get("/webhooks", key=OTHER_KEY).body)["webhooks"] == []
    for method, path in (("GET", f"/webhooks/{wh}"), ("DELETE", f"/webhooks/{wh}"),
                         ("POST", f"/webhooks/{wh}/test"), ("GET", f"/webhooks/{wh}/deliveries"),
                         ("POST", f"/webhooks/{wh}/deliveries/dlv_01JDQ7M3ZK8V2N4R6T8W0Y2A4C/redeliver")):
        answer = client.request(method, path, key=OTHER_KEY)
        assert answer.status_code == 404, (method, path)
        assert json.loads(answer.body)["error"]["code"] == "webhook_not_found"
    assert client.get(f"/webhooks/{wh}").status_code == 200


@pytest.mark.parametrize("url", ["http://93.184.215.14/hook", "https://127.0.0.1/hook", "https://169.254.169.254/",
                                 "https://[::1]/", "https://localhost/", "https://2130706433/", "ftp://x/"])
def test_a_target_the_gateway_will_not_call_is_refused_with_the_reason(client: Any, url: str) -> None:
    answer = subscribe(client, url)

    assert answer.status_code == 422
    error = json.loads(answer.body)["error"]
    assert error["code"] == "invalid_webhook_url" and error["message"]


def test_a_malformed_subscription_is_a_400(client: Any) -> None:
    for body in ({"url": PUBLIC_URL}, {"url": PUBLIC_URL, "events": []}, {"url": PUBLIC_URL, "events": ["nope"]},
                 {"url": PUBLIC_URL, "events": ["*"], "extra": 1}):
        assert client.post("/webhooks", json_body=body).status_code == 400, body


# -- deliveries ---------------------------------------------------------------------------


def test_a_test_event_reaches_only_its_subscription_signed_for_a_standard_verifier(
        client: Any, gateway: Any, resources: EmbeddedAws, local_targets: None) -> None:
    with webhook_receiver() as (url, got), webhook_receiver() as (other_url, other_got):
        webhook = json.loads(subscribe(client, url).body)
        subscribe(client, other_url)

        answer = client.post(f"/webhooks/{webhook['id']}/test")
        drain(resources, gateway)

    assert answer.status_code == 202
    event = json.loads(answer.body)
    assert event["type"] == "webhook.test" and event["data"]["webhook_id"] == webhook["id"]
    (request,) = got
    assert other_got == []
    assert verified(webhook["secret"], request) == event
    assert request.headers["webhook-id"] == event["id"]
    assert request.headers["content-type"] == "application/json"
    (delivery,) = json.loads(client.get(f"/webhooks/{webhook['id']}/deliveries").body)["deliveries"]
    assert (delivery["status"], delivery["attempts"], delivery["event_id"]) == ("delivered", 1, event["id"])
    assert delivery["history"][0]["response_status"] == 200 and delivery["next_attempt_at"] is None


def test_a_tampered_body_or_an_old_timestamp_fails_the_standard_verifier(
        client: Any, gateway: Any, resources: EmbeddedAws, local_targets: None) -> None:
    with webhook_receiver() as (url, got):
        webhook = json.loads(subscribe(client, url).body)
        client.post(f"/webhooks/{webhook['id']}/test")
        drain(resources, gateway)
    (request,) = got
    verified(webhook["secret"], request)

    tampered = Delivered(request.headers, request.body.replace(b"webhook.test", b"order.created"))
    old = Delivered({**request.headers, "webhook-timestamp": str(int(time.time()) - 600)}, request.body)
    other_secret = json.loads(subscribe(client, url).body)["secret"]
    for bad, secret in ((tampered, webhook["secret"]), (old, webhook["secret"]), (request, other_secret)):
        with pytest.raises(WebhookVerificationError):
            verified(secret, bad)


def test_redeliver_sends_the_same_event_again_with_the_same_webhook_id(
        client: Any, gateway: Any, resources: EmbeddedAws, local_targets: None) -> None:
    with webhook_receiver() as (url, got):
        webhook = json.loads(subscribe(client, url).body)
        client.post(f"/webhooks/{webhook['id']}/test")
        drain(resources, gateway)
        (delivery,) = json.loads(client.get(f"/webhooks/{webhook['id']}/deliveries").body)["deliveries"]

        answer = client.post(f"/webhooks/{webhook['id']}/deliveries/{delivery['id']}/redeliver")
        drain(resources, gateway)

    assert answer.status_code == 202
    first, again = got
    assert again.body == first.body and again.headers["webhook-id"] == first.headers["webhook-id"]
    verified(webhook["secret"], again)
    (after,) = json.loads(client.get(f"/webhooks/{webhook['id']}/deliveries").body)["deliveries"]
    assert (after["status"], after["attempts"]) == ("delivered", 2)
    assert [entry["attempt"] for entry in after["history"]] == [1, 2]


def test_a_subscription_disabled_by_410_refuses_a_test_event_and_a_redelivery(
        client: Any, gateway: Any, resources: EmbeddedAws, local_targets: None) -> None:
    # given a subscription whose URL answered its first delivery with 410 Gone
    with webhook_receiver([410]) as (url, got):
        webhook = json.loads(subscribe(client, url).body)
        client.post(f"/webhooks/{webhook['id']}/test")
        drain(resources, gateway)
        (delivery,) = json.loads(client.get(f"/webhooks/{webhook['id']}/deliveries").body)["deliveries"]

        # when a test event and a redelivery are asked for
        test = client.post(f"/webhooks/{webhook['id']}/test")
        again = client.post(f"/webhooks/{webhook['id']}/deliveries/{delivery['id']}/redeliver")
        drain(resources, gateway)

    # then both say why nothing would be sent, and nothing was
    assert json.loads(client.get(f"/webhooks/{webhook['id']}").body)["status"] == "disabled"
    for answer in (test, again):
        assert answer.status_code == 422 and json.loads(answer.body)["error"]["code"] == "webhook_disabled"
    assert len(got) == 1


def test_no_delivery_starts_after_the_subscription_is_deleted(
        client: Any, gateway: Any, resources: EmbeddedAws, local_targets: None) -> None:
    with webhook_receiver() as (url, got):
        webhook = json.loads(subscribe(client, url).body)
        client.post(f"/webhooks/{webhook['id']}/test")  # queued, not yet sent

        assert client.delete(f"/webhooks/{webhook['id']}").status_code == 204
        drain(resources, gateway)

    assert got == []


def test_deliveries_are_listed_newest_first_in_pages(
        client: Any, gateway: Any, resources: EmbeddedAws, local_targets: None) -> None:
    with webhook_receiver() as (url, _):
        webhook = json.loads(subscribe(client, url).body)
        events = [json.loads(client.post(f"/webhooks/{webhook['id']}/test").body)["id"] for _ in range(3)]
        drain(resources, gateway)

    first = json.loads(client.get(f"/webhooks/{webhook['id']}/deliveries?limit=2").body)
    rest = json.loads(client.get(f"/webhooks/{webhook['id']}/deliveries?limit=2&cursor={first['next_cursor']}").body)

    assert [d["event_id"] for d in first["deliveries"] + rest["deliveries"]] == events[::-1]
    assert client.get(f"/webhooks/{webhook['id']}/deliveries?cursor=bogus").status_code == 400


def test_the_secret_never_reaches_a_log_line(client: Any, gateway: Any, resources: EmbeddedAws,
                                             local_targets: None, log_lines: Any) -> None:
    with webhook_receiver([500]) as (url, _):
        webhook = json.loads(subscribe(client, url).body)
        client.post(f"/webhooks/{webhook['id']}/test")
        drain(resources, gateway)
        client.get(f"/webhooks/{webhook['id']}")

    assert webhook["secret"] not in log_lines.text
    assert webhook["secret"].removeprefix("whsec_") not in log_lines.text
    assert any(line.get("message") == "webhook attempt" for line in log_lines)


def test_a_message_the_worker_cannot_handle_is_logged_once_and_left_to_come_back(
        gateway: Any, resources: EmbeddedAws, log_lines: Any) -> None:
    sqs = resources.client("sqs")
    url = os.environ["WEBHOOK_QUEUE_URL"]
    sqs.send_message(QueueUrl=url, MessageBody="not a delivery message")

    assert drain(resources, gateway) == 1

    (crash,) = [line for line in log_lines if line["logger"] == "chalicelib.crash"]
    assert crash["route"] == "webhook worker" and crash["message_id"] and "Traceback" in crash["exception"]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessagesNotVisible"])
    assert attributes["Attributes"]["ApproximateNumberOfMessagesNotVisible"] == "1"  # not deleted


def test_a_slow_subscriber_does_not_hold_up_another_under_the_local_worker(
        client: Any, gateway: Any, aws: EmbeddedAws, local_targets: None) -> None:
    import threading
    import time

    from local.run import start_webhook_worker

    stopped = threading.Event()
    with webhook_receiver(stall=30) as (slow_url, slow_got), webhook_receiver() as (fast_url, fast_got):
        slow = json.loads(subscribe(client, slow_url).body)["id"]
        fast = json.loads(subscribe(client, fast_url).body)["id"]
        worker = start_webhook_worker(aws.client("sqs"), os.environ["WEBHOOK_QUEUE_URL"], stopped)
        try:
            # given a delivery whose receiver holds the request (the sender gives up after 10 s)
            assert client.post(f"/webhooks/{slow}/test").status_code == 202
            deadline = time.monotonic() + 30
            while not slow_got and time.monotonic() < deadline:
                time.sleep(0.05)
            assert slow_got, "the slow receiver got nothing"
            held_since = time.monotonic()
            # when another subscription has a delivery meanwhile
            assert client.post(f"/webhooks/{fast}/test").status_code == 202
            while not fast_got and time.monotonic() < held_since + 30:
                time.sleep(0.05)
            arrived = time.monotonic() - held_since
        finally:
            stopped.set()
            worker.join(timeout=30)

    # then it arrives while the first is still held (one worker would wait out its 10 s)
    assert fast_got and arrived < 8, arrived
