"""The Python peer of the worker benchmark (scripts/bench-matrix.sh worker, variant
`peer-python`): the approach of the common confluent-kafka + asyncio tutorials, done
properly. A confluent-kafka `Consumer` (no auto-commit, `auto.offset.reset=earliest`) is
polled from a worker thread (`consume()` in the default executor, so the event loop never
blocks on the broker); each record becomes an asyncio task that does what the relay's
`guest_sync` route does for an attributes detail event and writes the guest's attributes to
the CMS with aiohttp, up to `--max-in-flight` records at once (default 256, the relay's
`RELAY_MAX_IN_FLIGHT` default).

Per record, the same work as the relay (src/pipeline/processor.rs, route_handlers.rs,
event_view.rs, guest_scope.rs and src/sinks/cms/json.rs):
- decode the raw record: Avro single-object encoding (`C3 01`, the writer schema's 8-byte
  little-endian CRC-64-AVRO (Rabin) fingerprint, the datum) of `schemas/raw_event.avsc`
  or one of `schemas/history/raw_event.*.avsc`, read with fastavro's `schemaless_reader`.
  Relays before the fix wrote apache_avro 0.21's fingerprint, which is not quite the
  specification's (it keeps a logical-typed long as `{"type":"long"}` in the canonical form,
  see `canonical_form`); today's relay writes the specification's. As the relay does,
  both are computed from each schema file and both accepted; an unknown fingerprint stops
  the peer with exit code 2 and a message naming the fingerprints it knows (nothing is
  silently skipped);
- parse the payload JSON once; route `v2.detail.events.conversation.{id}.attributes` to
  guest_sync (the relay's default table); the body is `detail.eventBody` (EVENTBRIDGE),
  `eventBody` (NOTIFICATION) or `data` (ENVELOPE);
- idempotency key `guest_sync:<event_id>` (and, as the relay does for EventBridge events,
  `guest_sync:<eventbridge_id>`); a key already synced is a duplicate and is not sent;
- the guest scope of `RELAY_GUEST_SYNC_SCOPE` (default `web_messaging`: an attributes event
  whose `communications[].mediaType` shows no MESSAGE is skipped; `all` skips nothing);
- the customer from the event (`participantId`, `attributes`), the entry id per
  `RELAY_CMS_ENTRY_KEY` (default: the conversation id), the relay's stale guard (an event
  older than the newest one synced to its entry is skipped), the fields per
  `RELAY_ATTRIBUTE_MAP` with the same string -> number / bool conversions, plus
  `conversationId`, `participantId`, `eventId` and `eventTimeMs`;
- the same HTTP request: `POST {RELAY_CMS_URL}` with body
  `{"fields": {...}, "id": <entry id>, "type": "guest_session"}` (compact JSON, keys sorted
  as serde_json writes them), headers `Content-Type: application/json`,
  `X-Idempotency-Key: guest_sync:<event id>`, `X-Relay-Event-Id: <event id>` and
  `Authorization: Bearer <RELAY_CMS_API_KEY>` when that is set; a 409 (entry exists) is
  followed by `PUT {RELAY_CMS_URL}/<entry id, percent-encoded as one segment>` with the
  same body and headers. No `User-Agent` or `Accept-Encoding` is added (reqwest sends
  neither), so the simulator sees the relay's request.

Where it differs from the relay (in the benchmark's workload, where no write fails, each
makes the peer's job lighter, none heavier):
- the idempotency store is a Python set in memory (and the stale guard a dict), a minimal
  stand-in for the relay's, which also writes every mark durably to a compacted Kafka topic
  (acks=all) before the record's offset may move and tails that topic for other workers'
  marks; both here are unbounded (the relay's is an LRU of `RELAY_IDEMPOTENCY_CAPACITY`);
- a retriable failure (408, 429, 5xx, no answer) is retried here, in the handler, up to
  3 more times with backoff (0.5 s, 1 s, 2 s); a permanent one (another 4xx) is not. What
  still fails is logged, counted `failed` and committed past (where the relay would write
  it to a retry topic or the dead-letter topic: neither is reproduced here);
- only attributes events are handled: an event of another route, or one that carries no
  attributes (the relay would GET the conversation), is counted `unsupported` and skipped;
- no tracing, no per-request metrics (the relay keeps Prometheus histograms per call).

Commit after handling: per partition, the offsets received are kept in arrival order and a
record's completion only marks it done; the committable offset is the lowest record not yet
done (or one past the last received), so an offset is committed only when every record
before it in that partition is handled. Commits go out every 0.5 s (as the relay's) with
`asynchronous=True` for the partitions whose point moved past the last confirmed commit
(confirmation comes from the `on_commit` callback, so a failed commit is offered again).
A revoke stops the records of the revoked partitions that have not started, waits (at most
`--drain-timeout`) for those running and commits synchronously before the partitions go;
a lost partition is dropped without a commit. One record key (the conversation id) is
handled strictly in order, different keys concurrently, as in the relay.

SIGTERM / SIGINT: stop consuming, let the running handlers finish (at most
`--drain-timeout`), commit synchronously, close the consumer, exit 0.

Counters: `GET /metrics` on `--metrics-port` (127.0.0.1) answers lines such as
`peer_events_total{outcome="synced"} 1234` (outcomes synced, duplicate, stale, skipped,
unsupported, failed, abandoned: a write still failing when the peer stops, left
uncommitted) and `peer_cms_retries_total 0`; scripts/bench/matrix.py reads
`synced` as it reads the relay's `relay_events_processed_total{outcome="synced"}`.

Settings come from the relay's own variables, so the matrix starts both with one
environment: RELAY_KAFKA_BROKERS, RELAY_TOPIC_PREFIX (topic `<prefix>.events.raw`),
RELAY_CONSUMER_GROUP, RELAY_CMS_URL, RELAY_CMS_API_KEY, RELAY_ATTRIBUTE_MAP,
RELAY_CMS_ENTRY_KEY, RELAY_GUEST_SYNC_SCOPE, RELAY_MAX_IN_FLIGHT, RELAY_HTTP_TIMEOUT (seconds,
default 10); flags override them.

    RELAY_KAFKA_BROKERS=127.0.0.1:9092 RELAY_TOPIC_PREFIX=genesys \\
    RELAY_CONSUMER_GROUP=peer RELAY_CMS_URL=http://127.0.0.1:8081/v1/entries \\
        python worker_peer.py --max-in-flight 256 --metrics-port 9464
"""

import argparse
import asyncio
import collections
import io
import json
import math
import os
import re
import signal
import sys
import time
import urllib.parse
from pathlib import Path

import aiohttp
import fastavro
from aiohttp import web
from confluent_kafka import Consumer, KafkaError, TopicPartition
from yarl import URL

try:
    import uvloop
except ImportError:  # the peer still runs on the stock loop
    uvloop = None

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "schemas"
ROUTE = "guest_sync"
ATTRIBUTES_TOPIC = re.compile(r"^v2\.detail\.events\.conversation\.[^.]+\.attributes$")
DEFAULT_ATTRIBUTE_MAP = "cart_value:number,last_page,session_id,loyalty_tier"
RETRY_DELAYS = (0.5, 1.0, 2.0)
COMMIT_INTERVAL = 0.5
# Characters url's path-segment encoding (the relay's `url_with_segments`) leaves as they are.
SEGMENT_SAFE = "!$&'()*+,;=:@[]^|"
INT_TEXT = re.compile(r"^[+-]?[0-9]+$")


def log(msg):
    print(f"worker_peer: {msg}", file=sys.stderr, flush=True)


# --- the raw record --------------------------------------------------------------------

def _crc64_table():
    empty = 0xC15D213AA4D7A795
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (empty & -(fp & 1))
        table.append(fp)
    return empty, table


def rabin_fingerprint(canonical: str) -> bytes:
    """CRC-64-AVRO of the schema's Parsing Canonical Form, as the single-object header
    carries it (8 bytes, little-endian; Avro specification, "Schema Fingerprints")."""
    fp, table = _crc64_table()
    for b in canonical.encode():
        fp = (fp >> 8) ^ table[(fp ^ b) & 0xFF]
    return fp.to_bytes(8, "little")


PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}


def canonical_form(schema, relay_quirk, namespace=None, seen=None):
    """The schema's Parsing Canonical Form (Avro specification), or, with `relay_quirk`, the
    form apache_avro 0.21 (the relay's Avro crate) fingerprints: it serializes the parsed
    schema back to JSON and strips `logicalType` only after deciding whether an object is a
    bare primitive, so `{"type": "long", "logicalType": "timestamp-millis"}` stays
    `{"type":"long"}` where the specification reduces it to `"long"`. The relay's
    single-object headers carry the fingerprint of that form."""
    seen = set() if seen is None else seen
    dump = lambda v: json.dumps(v, separators=(",", ":"))  # noqa: E731
    if isinstance(schema, str):
        if schema in PRIMITIVES:
            return dump(schema)
        return dump(schema if "." in schema or not namespace else f"{namespace}.{schema}")
    if isinstance(schema, list):
        return "[" + ",".join(canonical_form(s, relay_quirk, namespace, seen) for s in schema) + "]"
    kind = schema["type"]
    if isinstance(kind, str) and kind in PRIMITIVES:
        if relay_quirk and "logicalType" in schema:
            return '{"type":' + dump(kind) + "}"
        return dump(kind)
    if kind in ("record", "error", "enum", "fixed"):
        name = schema["name"]
        ns = schema.get("namespace", namespace)
        full = name if "." in name or not ns else f"{ns}.{name}"
        if full in seen:
            return dump(full)
        seen.add(full)
        inner_ns = full.rsplit(".", 1)[0] if "." in full else None
        parts = ['"name":' + dump(full), '"type":' + dump("record" if kind == "error" else kind)]
        if kind in ("record", "error"):
            parts.append('"fields":[' + ",".join(
                '{"name":' + dump(f["name"]) + ',"type":' + canonical_form(f["type"], relay_quirk, inner_ns, seen) + "}"
                for f in schema["fields"]) + "]")
        elif kind == "enum":
            parts.append('"symbols":' + dump(schema["symbols"]))
        else:
            parts.append(f'"size":{int(schema["size"])}')
        return "{" + ",".join(parts) + "}"
    if kind == "array":
        return '{"type":"array","items":' + canonical_form(schema["items"], relay_quirk, namespace, seen) + "}"
    if kind == "map":
        return '{"type":"map","values":' + canonical_form(schema["values"], relay_quirk, namespace, seen) + "}"
    return canonical_form(kind, relay_quirk, namespace, seen)


def _without_logical_types(node):
    # fastavro would turn timestamp-millis into datetime objects; the relay reads the long.
    # The Parsing Canonical Form has no logicalType, so the fingerprint is unchanged.
    if isinstance(node, dict):
        return {k: _without_logical_types(v) for k, v in node.items() if k != "logicalType"}
    if isinstance(node, list):
        return [_without_logical_types(v) for v in node]
    return node


class RawCodec:
    """Decodes RawEvent records written as Avro single-object encoding: today's schema, or
    an earlier one found by its fingerprint (resolved to today's, as the relay does). Each
    schema file is known by two fingerprints: that of the form the relay writes (see
    `canonical_form`) and that of the specification's form, so a spec-conformant writer's
    records decode too. Our specification form must equal fastavro's, or the peer refuses
    to start."""

    def __init__(self):
        current = SCHEMAS / "raw_event.avsc"
        self.reader = fastavro.parse_schema(_without_logical_types(json.loads(current.read_text())))
        self.writers = {}
        for path in [current] + sorted((SCHEMAS / "history").glob("raw_event.*.avsc")):
            raw = json.loads(path.read_text())
            spec = canonical_form(raw, relay_quirk=False)
            if spec != fastavro.schema.to_parsing_canonical_form(raw):
                raise SystemExit(f"{path}: our Parsing Canonical Form differs from fastavro's:\n{spec}\n"
                                 f"{fastavro.schema.to_parsing_canonical_form(raw)}")
            parsed = None if path == current else fastavro.parse_schema(_without_logical_types(raw))
            for form, label in ((canonical_form(raw, relay_quirk=True), "relay form"), (spec, "spec form")):
                header = b"\xc3\x01" + rabin_fingerprint(form)
                self.writers.setdefault(header, (f"{path.relative_to(ROOT)}, {label}", parsed))

    def known(self):
        return ", ".join(f"{h[2:].hex()} ({p})" for h, (p, _) in self.writers.items())

    def decode(self, value: bytes) -> dict:
        header = value[:10]
        if len(value) < 10 or header[:2] != b"\xc3\x01":
            raise PoisonRecord("no Avro single-object header (C3 01)")
        found = self.writers.get(header)
        if found is None:
            raise UnknownFingerprint(
                f"record fingerprint {header[2:].hex()} is none of the schemas loaded: {self.known()}")
        _, writer = found
        buf = io.BytesIO(value[10:])
        if writer is None:
            record = fastavro.schemaless_reader(buf, self.reader, None)
        else:
            record = fastavro.schemaless_reader(buf, writer, self.reader)
        if buf.tell() != len(value) - 10:
            raise PoisonRecord(f"{len(value) - 10 - buf.tell()} trailing bytes")
        return record


class PoisonRecord(Exception):
    pass


class UnknownFingerprint(Exception):
    pass


# --- what guest_sync writes ------------------------------------------------------------

def parse_attribute_map(text):
    """`name[:type][=field]`, comma-separated (RELAY_ATTRIBUTE_MAP)."""
    out = []
    for pair in (p.strip() for p in text.split(",")):
        if not pair:
            continue
        left, _, field = pair.partition("=")
        name, _, kind = left.partition(":")
        name, kind, field = name.strip(), (kind.strip() or "string"), field.strip()
        if kind not in ("string", "number", "bool") or not name or ("=" in pair and not field):
            raise SystemExit(f"RELAY_ATTRIBUTE_MAP: {pair!r} is not name[:type][=field]")
        out.append((name, kind, field or name))
    return out


class Unconvertible(Exception):
    pass


def convert(name, kind, raw):
    """The relay's `convert` (route_handlers.rs): Genesys attribute values are strings."""
    if kind == "string":
        return raw if isinstance(raw, str) else json.dumps(raw, separators=(",", ":"), ensure_ascii=False)
    if kind == "number":
        if isinstance(raw, (int, float)) and not isinstance(raw, bool):
            return raw
        if isinstance(raw, str):
            s = raw.strip()
            if INT_TEXT.match(s) and -2**63 <= int(s) < 2**63:
                return int(s)
            if "_" not in s:
                try:
                    f = float(s)
                except ValueError:
                    f = None
                if f is not None and math.isfinite(f):
                    return f
        raise Unconvertible(f"attribute {name}: {raw!r} is not a number")
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.strip().lower() in ("true", "false"):
        return raw.strip().lower() == "true"
    raise Unconvertible(f"attribute {name}: {raw!r} is not a bool (true or false)")


def nonempty_str(obj, key):
    v = obj.get(key)
    return v if isinstance(v, str) and v else None


def scope_skips(body):
    """`web_messaging` scope on an attributes event (guest_scope.rs `judge`): skip only what
    the body shows is not messaging; a body that does not tell is synced."""
    comms = body.get("communications")
    if isinstance(comms, list):
        media = [c.get("mediaType") for c in comms if isinstance(c, dict) and isinstance(c.get("mediaType"), str)]
        return bool(media) and not any(m.upper() == "MESSAGE" for m in media)
    media = body.get("mediaType")
    if isinstance(media, str):
        if media.upper() != "MESSAGE":
            return True
        kind = body.get("messageType")
        return isinstance(kind, str) and kind.upper() != "WEBMESSAGING"
    return False


class Retriable(Exception):
    pass


class Abandoned(Exception):
    """Stopping while the CMS write still fails: the record is left for the next owner."""


class Permanent(Exception):
    pass


class Track:
    """One assigned partition's offsets: those received, in arrival (offset) order, and
    which of them are done. The commit point is the first one not done, or one past the
    last received when all are."""

    __slots__ = ("pending", "done", "next_after_seen")

    def __init__(self):
        self.pending = collections.deque()
        self.done = set()
        self.next_after_seen = None

    def begin(self, offset):
        self.pending.append(offset)
        self.next_after_seen = offset + 1

    def finish(self, offset):
        self.done.add(offset)
        pending, done = self.pending, self.done
        while pending and pending[0] in done:
            done.discard(pending.popleft())

    def commit_point(self):
        return self.pending[0] if self.pending else self.next_after_seen


class Peer:
    def __init__(self, args):
        self.args = args
        self.codec = RawCodec()
        self.attribute_map = parse_attribute_map(args.attribute_map)
        self.entry_key = args.entry_key
        self.scope_all = args.guest_scope == "all"
        self.cms_url = args.cms_url.rstrip("/")
        self.headers = {"Content-Type": "application/json"}
        if args.cms_api_key:
            self.headers["Authorization"] = f"Bearer {args.cms_api_key}"
        self.synced_keys = set()
        self.newest_by_entry = {}
        self.counts = collections.Counter()
        self.retries = 0
        # Per (topic, partition) of the current assignment; a revoke or loss drops it.
        self.tracks = {}
        self.confirmed = {}
        self.running_by_tp = collections.Counter()
        self.revoked = set()
        # Key lanes: records of one key wait here while an earlier one runs.
        self.lanes = {}
        self.outstanding = 0
        self.tasks = set()
        self.stopping = False
        self.fatal = None

    # -- Kafka --------------------------------------------------------------------------

    def make_consumer(self):
        self.consumer = Consumer({
            "bootstrap.servers": self.args.brokers,
            "group.id": self.args.group,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": False,
            "fetch.wait.max.ms": 100,
            # librdkafka prefetches up to 100,000 records per partition otherwise.
            "queued.min.messages": 500,
            "on_commit": self.on_commit,
        })
        self.consumer.subscribe([self.args.topic], on_assign=self.on_assign,
                                on_revoke=self.on_revoke, on_lost=self.on_lost)

    def on_commit(self, err, partitions):
        # Served from consume() (the poll thread); only a confirmed offset counts.
        if err is not None:
            log(f"commit failed: {err}")
            return
        for tp in partitions:
            if tp.error is None and tp.offset >= 0:
                key = (tp.topic, tp.partition)
                self.confirmed[key] = max(self.confirmed.get(key, -1), tp.offset)

    def on_assign(self, consumer, partitions):
        for tp in partitions:
            self.revoked.discard((tp.topic, tp.partition))

    def on_revoke(self, consumer, partitions):
        # Runs in the poll thread (inside consume()); the handlers run on the loop.
        keys = [(tp.topic, tp.partition) for tp in partitions]
        self.revoked.update(keys)
        if not self.stopping:
            fut = asyncio.run_coroutine_threadsafe(self.drain(keys), self.loop)
            try:
                fut.result(self.args.drain_timeout)
            except Exception as e:  # noqa: BLE001 - a slow drain commits what is done
                log(f"revoke: handlers still running after {self.args.drain_timeout} s ({e!r})")
        self.commit(keys, asynchronous=False)
        for k in keys:
            self.forget(k)

    def on_lost(self, consumer, partitions):
        for tp in partitions:
            key = (tp.topic, tp.partition)
            self.revoked.add(key)
            self.forget(key)

    def forget(self, key):
        self.tracks.pop(key, None)
        self.confirmed.pop(key, None)

    async def drain(self, keys):
        """Until no handler of the partitions `keys` runs (records queued behind their key
        do not start any more: they are revoked)."""
        while any(self.running_by_tp[k] > 0 for k in keys):
            await asyncio.sleep(0.01)

    def commit(self, keys=None, asynchronous=True):
        offsets = []
        for key in list(self.tracks) if keys is None else keys:
            track = self.tracks.get(key)
            point = track.commit_point() if track is not None else None
            if point is not None and point > self.confirmed.get(key, -1):
                offsets.append(TopicPartition(key[0], key[1], point))
        if not offsets:
            return
        try:
            if asynchronous:
                self.consumer.commit(offsets=offsets, asynchronous=True)
            else:
                for tp in self.consumer.commit(offsets=offsets, asynchronous=False) or []:
                    if tp.error is None:
                        self.confirmed[(tp.topic, tp.partition)] = tp.offset
        except Exception as e:  # noqa: BLE001 - offered again at the next tick
            log(f"commit failed: {e}")

    # -- records -------------------------------------------------------------------------

    def receive(self, msg):
        key = (msg.topic(), msg.partition())
        track = self.tracks.get(key)
        if track is None:
            track = self.tracks[key] = Track()
        track.begin(msg.offset())
        self.outstanding += 1
        lane_key = msg.key()
        if lane_key is not None:
            lane = self.lanes.get(lane_key)
            if lane is not None:
                lane.append((msg, track))
                return
            self.lanes[lane_key] = collections.deque()
        self.start(msg, track)

    def start(self, msg, track):
        self.running_by_tp[(msg.topic(), msg.partition())] += 1
        task = asyncio.ensure_future(self.run(msg, track))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def run(self, msg, track):
        key = (msg.topic(), msg.partition())
        finished = True
        try:
            outcome = await self.handle(msg.value())
        except UnknownFingerprint as e:
            self.fail_fatally(str(e))
            outcome, finished = "failed", False
        except Abandoned:
            outcome, finished = "abandoned", False
        except Exception as e:  # noqa: BLE001 - the relay dead-letters these as poison
            log(f"record {key[1]}@{msg.offset()} failed: {e!r}")
            outcome = "failed"
        self.counts[outcome] += 1
        self.running_by_tp[key] -= 1
        if finished:
            # The record no longer holds its partition's commit point back (a track of a
            # revoked assignment is no longer read).
            track.finish(msg.offset())
        self.outstanding -= 1
        lane_key = msg.key()
        if lane_key is not None:
            lane = self.lanes.get(lane_key)
            while lane:
                nxt, nxt_track = lane.popleft()
                # A record of a revoked (or since reassigned) partition's assignment is
                # dropped, not handled, as is every record once stopping: its offset stays
                # uncommitted for the partition's next owner.
                nxt_key = (nxt.topic(), nxt.partition())
                if self.stopping or nxt_key in self.revoked or self.tracks.get(nxt_key) is not nxt_track:
                    self.outstanding -= 1
                    continue
                self.start(nxt, nxt_track)
                return
            self.lanes.pop(lane_key, None)
        self.room.set()

    def fail_fatally(self, message):
        if self.fatal is None:
            self.fatal = message
            log(f"FATAL: {message}")
            self.stop()

    async def handle(self, value):
        if value is None:
            raise PoisonRecord("record has no value")
        event = self.codec.decode(value)
        if not ATTRIBUTES_TOPIC.match(event["event_type"]):
            return "unsupported"
        payload = json.loads(event["payload"])
        shape = event["shape"]
        if shape == "EVENTBRIDGE":
            detail = payload.get("detail")
            body = detail.get("eventBody") if isinstance(detail, dict) else None
        elif shape == "NOTIFICATION":
            body = payload.get("eventBody")
        else:
            body = payload.get("data")
        if not isinstance(body, dict):
            return "unsupported"
        if "participants" in body or not isinstance(body.get("attributes"), dict):
            # A conversation object, or no attributes: the relay would GET the conversation.
            return "unsupported"
        event_id = event["event_id"]
        idem_key = f"{ROUTE}:{event_id}"
        legacy = event.get("eventbridge_id")
        if idem_key in self.synced_keys or (legacy and f"{ROUTE}:{legacy}" in self.synced_keys):
            return "duplicate"
        if not self.scope_all and scope_skips(body):
            return "skipped"
        conversation_id = event.get("conversation_id")
        if conversation_id is None:
            conversation_id = nonempty_str(body, "conversationId")
        if conversation_id is None:
            raise Permanent("event has no conversation id")
        participant_id = nonempty_str(body, "participantId")
        if participant_id is None:
            participant_id = event.get("participant_id")
        if self.entry_key == "participant":
            entry_id = participant_id if participant_id is not None else conversation_id
        else:  # conversation; external_contact falls back to it (attributes events name none)
            entry_id = conversation_id
        event_time = event.get("event_time_ms")
        newest = self.newest_by_entry.get(entry_id)
        if event_time is not None and newest is not None and event_time < newest:
            return "stale"
        attributes = body["attributes"]
        fields = {}
        for name, kind, field in self.attribute_map:
            if name in attributes:
                fields[field] = convert(name, kind, attributes[name])
        fields["conversationId"] = conversation_id
        if participant_id is not None:
            fields["participantId"] = participant_id
        fields["eventId"] = event_id
        if event_time is not None:
            fields["eventTimeMs"] = event_time
        # serde_json (no preserve_order) writes object keys sorted, compact.
        data = json.dumps({"id": entry_id, "type": "guest_session", "fields": fields},
                          separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()
        headers = dict(self.headers)
        headers["X-Idempotency-Key"] = idem_key
        headers["X-Relay-Event-Id"] = event_id
        await self.upsert_with_retries(entry_id, data, headers)
        self.synced_keys.add(idem_key)
        if event_time is not None and (newest is None or event_time > newest):
            self.newest_by_entry[entry_id] = event_time
        return "synced"

    async def upsert_with_retries(self, entry_id, data, headers):
        for attempt in range(len(RETRY_DELAYS) + 1):
            try:
                return await self.upsert(entry_id, data, headers)
            except Retriable as e:
                if self.stopping:
                    raise Abandoned() from e
                if attempt == len(RETRY_DELAYS):
                    raise
                self.retries += 1
                log(f"CMS write of {entry_id} failed ({e}); retrying in {RETRY_DELAYS[attempt]} s")
                await asyncio.sleep(RETRY_DELAYS[attempt])

    async def upsert(self, entry_id, data, headers):
        """json.rs `upsert`: POST the collection; 409 -> PUT the entry, same body and key."""
        status = await self.send("POST", self.cms_url, data, headers)
        if 200 <= status < 300:
            return "created"
        if status == 409:
            if entry_id in ("", ".", ".."):
                raise Permanent(f"{entry_id!r} is not a usable path segment")
            url = f"{self.cms_url}/{urllib.parse.quote(entry_id, safe=SEGMENT_SAFE)}"
            status = await self.send("PUT", url, data, headers)
            if 200 <= status < 300:
                return "updated"
        if status in (408, 429) or 500 <= status <= 599:
            raise Retriable(f"CMS answered {status}")
        raise Permanent(f"CMS answered {status}")

    async def send(self, method, url, data, headers):
        try:
            async with self.http.request(method, URL(url, encoded=True), data=data,
                                         headers=headers) as resp:
                await resp.read()
                return resp.status
        except (aiohttp.ClientError, asyncio.TimeoutError) as e:
            raise Retriable(f"no answer: {e!r}") from e

    # -- the loop ------------------------------------------------------------------------

    def stop(self):
        self.stopping = True
        self.room.set()

    async def metrics(self, _request):
        lines = [f'peer_events_total{{outcome="{o}"}} {self.counts[o]}'
                 for o in ("synced", "duplicate", "stale", "skipped", "unsupported", "failed", "abandoned")]
        lines.append(f"peer_cms_retries_total {self.retries}")
        lines.append(f"peer_in_flight {self.outstanding}")
        return web.Response(text="\n".join(lines) + "\n")

    async def main(self):
        self.loop = asyncio.get_running_loop()
        self.room = asyncio.Event()
        self.room.set()
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(sig, self.stop)
        runner = None
        if self.args.metrics_port:
            app = web.Application()
            app.router.add_get("/metrics", self.metrics)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", self.args.metrics_port).start()
        connector = aiohttp.TCPConnector(limit=self.args.max_in_flight, limit_per_host=self.args.max_in_flight)
        self.http = aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=self.args.http_timeout),
            skip_auto_headers=("User-Agent", "Accept-Encoding"))
        self.make_consumer()
        log(f"consuming {self.args.topic} as {self.args.group}, up to {self.args.max_in_flight} in flight, "
            f"CMS {self.cms_url}")
        last_commit = time.monotonic()
        try:
            while not self.stopping:
                free = self.args.max_in_flight - self.outstanding
                if free <= 0:
                    self.room.clear()
                    try:
                        await asyncio.wait_for(self.room.wait(), COMMIT_INTERVAL)
                    except asyncio.TimeoutError:
                        pass
                else:
                    msgs = await self.loop.run_in_executor(None, self.consumer.consume, min(free, 500), 0.1)
                    for msg in msgs:
                        err = msg.error()
                        if err is not None:
                            if err.code() != KafkaError._PARTITION_EOF:
                                log(f"consumer error: {err}")
                            continue
                        if (msg.topic(), msg.partition()) in self.revoked:
                            continue
                        self.receive(msg)
                if time.monotonic() - last_commit >= COMMIT_INTERVAL:
                    self.commit()
                    last_commit = time.monotonic()
            # Stopping: let what runs finish, then commit what is done.
            if self.tasks:
                _, still = await asyncio.wait(set(self.tasks), timeout=self.args.drain_timeout)
                if still:
                    log(f"{len(still)} handlers still running after {self.args.drain_timeout} s; not committed")
            await self.loop.run_in_executor(None, lambda: self.commit(asynchronous=False))
        finally:
            await self.loop.run_in_executor(None, self.consumer.close)
            await self.http.close()
            if runner is not None:
                await runner.cleanup()
        log("stopped: " + ", ".join(f"{k} {v}" for k, v in sorted(self.counts.items())))
        return 2 if self.fatal else 0


def main():
    env = os.environ.get
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--brokers", default=env("RELAY_KAFKA_BROKERS", "127.0.0.1:9092"))
    p.add_argument("--topic", default=f"{env('RELAY_TOPIC_PREFIX', 'genesys')}.events.raw")
    p.add_argument("--group", default=env("RELAY_CONSUMER_GROUP", "genesys-relay-peer"))
    p.add_argument("--cms-url", default=env("RELAY_CMS_URL"))
    p.add_argument("--cms-api-key", default=env("RELAY_CMS_API_KEY"))
    p.add_argument("--attribute-map", default=env("RELAY_ATTRIBUTE_MAP", DEFAULT_ATTRIBUTE_MAP))
    p.add_argument("--entry-key", default=env("RELAY_CMS_ENTRY_KEY", "conversation"),
                   choices=["conversation", "participant", "external_contact"])
    p.add_argument("--guest-scope", default=env("RELAY_GUEST_SYNC_SCOPE", "web_messaging"),
                   choices=["web_messaging", "all"])
    p.add_argument("--max-in-flight", type=int, default=int(env("RELAY_MAX_IN_FLIGHT", "256")))
    p.add_argument("--http-timeout", type=float, default=float(env("RELAY_HTTP_TIMEOUT", "10").rstrip("s")))
    p.add_argument("--drain-timeout", type=float, default=30.0)
    p.add_argument("--metrics-port", type=int, default=0, help="serve GET /metrics on 127.0.0.1:PORT (0: off)")
    args = p.parse_args()
    if not args.cms_url:
        raise SystemExit("RELAY_CMS_URL (or --cms-url) is required")
    args.max_in_flight = max(1, args.max_in_flight)
    peer = Peer(args)
    if uvloop is not None:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            code = runner.run(peer.main())
    else:
        code = asyncio.run(peer.main())
    sys.exit(code)


if __name__ == "__main__":
    main()
