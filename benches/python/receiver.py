"""The Python peer of the ingress benchmark (scripts/bench-matrix.sh): the approach of the
FastAPI + confluent-kafka tutorials. `POST /webhooks/genesys` parses the JSON body, keys the
record by conversation id like the relay, produces it with acks=all (idempotent producer)
and answers 202 only after the delivery callback reported the broker's acknowledgement
(500 when the delivery failed, 503 when the local queue is full).

Invariant: no answer leaves before its record's delivery report, so its 202 means what the
relay's 202 means.

    BENCH_BROKERS=127.0.0.1:9092 BENCH_TOPIC=t uvicorn receiver:app --port 18082 \
        --loop uvloop --http httptools --no-access-log
"""

import asyncio
import json
import os
import threading

from confluent_kafka import KafkaException, Producer
from fastapi import FastAPI, Request, Response

TOPIC = os.environ["BENCH_TOPIC"]
producer = Producer(
    {
        "bootstrap.servers": os.environ["BENCH_BROKERS"],
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": 2,
        "compression.type": "lz4",
    }
)
app = FastAPI()


def _poll_forever() -> None:
    # Delivery callbacks run inside poll(); a thread keeps them flowing without blocking
    # the event loop (the tutorials' pattern).
    while True:
        producer.poll(0.1)


threading.Thread(target=_poll_forever, daemon=True).start()


def _conversation_id(body: dict) -> str | None:
    detail = body.get("detail")
    inner = detail.get("eventBody") if isinstance(detail, dict) else body.get("eventBody")
    if not isinstance(inner, dict):
        inner = body.get("data")
    if isinstance(inner, dict):
        cid = inner.get("conversationId")
        return cid if isinstance(cid, str) else None
    return None


@app.post("/webhooks/genesys")
async def webhook(request: Request) -> Response:
    raw = await request.body()
    try:
        body = json.loads(raw)
    except ValueError:
        return Response(status_code=400)
    key = _conversation_id(body) if isinstance(body, dict) else None
    loop = asyncio.get_running_loop()
    done: asyncio.Future = loop.create_future()

    def on_delivery(err, _msg) -> None:
        loop.call_soon_threadsafe(_settle, done, err)

    try:
        producer.produce(TOPIC, value=raw, key=key, on_delivery=on_delivery)
    except (BufferError, KafkaException):
        return Response(status_code=503)
    err = await done
    return Response(status_code=500 if err is not None else 202)


def _settle(fut: asyncio.Future, err) -> None:
    if not fut.done():
        fut.set_result(err)
