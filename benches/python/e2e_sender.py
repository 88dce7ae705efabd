#!/usr/bin/env python3
"""Open-loop sender of the `e2e` benchmark scenario (scripts/bench/matrix.py): POSTs
Genesys Cloud notifications in the Amazon EventBridge shape of benches/wrk/genesys-event.lua
(an attributes detail event of exactly --body-bytes bytes, its own conversation id, so its
own event id; `X-Relay-Secret`) at a fixed rate, and writes one line per event with the
time it was due, when its request started, when it was answered and how.

Open loop: event n is due at t0 + n / rate whatever happened to the earlier ones; each is
its own asyncio task, up to --conns connections at once (a request beyond that waits inside
the client for a free connection, and that wait counts as latency, since it is measured
from the due time). wrk (closed loop: a connection sends its next request only after the
answer) would send less when the server slows down and hide the queueing; wrk cannot
timestamp single requests either.

Sender lag = when the request's task started - when it was due: the sender's own delay
(CPU, event loop), not the server's. A send later than --late-ms is counted as late; many
late sends mean the sender, not the server, set the pace, and the run says so.

The event id is computed as the relay computes it (SHA-256 of the topic name followed by
the RFC 8785 form of `eventBody`; for these ASCII-only bodies with integer numbers that
form is `json.dumps(sort_keys=True, separators=(",", ":"))`), so the matrix can find each
event's CMS idempotency key (`guest_sync:<event id>`) in the CMS simulator's statistics.

Output (--out, tab-separated, one header line): n, conversation id, event id, due,
started and answered (Unix ms, 3 decimals), status (the HTTP status, or `timeout` /
`error:<exception>` when there was no answer). Last line on stdout: `E2E {json summary}`.

Needs aiohttp (benches/python/requirements.txt); uses uvloop when it is installed.
"""

import argparse
import asyncio
import gc
import hashlib
import json
import math
import resource
import time


def body_for(tag, n, size, event_time_ms):
    """The Lua's attributes event, byte for byte apart from the ids and the event time."""
    conv = f"{tag}-{n}"
    topic = f"v2.detail.events.conversation.{conv}.attributes"
    detail_type = "v2.detail.events.conversation.{id}.attributes"
    event_body = ('{"eventTime":%d,"conversationId":"%s","participantId":"p-%s",'
                  '"attributes":{"cart_value":"129.95","last_page":"/checkout/payment","session_id":"s-%s",'
                  '"loyalty_tier":"gold","pad":"%%s"}}') % (event_time_ms, conv, conv, conv)
    shell = ('{"version":"0","id":"eb-%s","detail-type":"%s","source":"aws.partner/genesys.com/cloud/'
             'bench-org/bench","account":"123456789012","time":"2026-11-25T08:30:00Z",'
             '"region":"eu-central-1","resources":[],"detail":{"topicName":"%s","version":"2",'
             '"eventBody":%s,"metadata":{"CorrelationId":"c-%d"},"timestamp":"2026-11-25T08:30:00.123Z"}}'
             ) % (conv, detail_type, topic, event_body, n)
    # The pad makes every body exactly `size` bytes whatever the counter's digits.
    pad = max(0, size - len(shell % ""))
    body = (shell % ("x" * pad)).encode()
    parsed = json.loads(body)["detail"]["eventBody"]
    canonical = json.dumps(parsed, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    event_id = hashlib.sha256(topic.encode() + canonical.encode()).hexdigest()
    return conv, event_id, body


def percentile(sorted_vals, q):
    if not sorted_vals:
        return None
    return sorted_vals[max(0, min(len(sorted_vals) - 1, math.ceil(q / 100 * len(sorted_vals)) - 1))]


async def run(args):
    import aiohttp

    n_events = int(round(args.rate * args.seconds))
    # Bodies are formatted before the first send (the event time is the planned start), so
    # a send costs the sender no formatting.
    planned_ms = int(time.time() * 1000) + 1000
    events = [body_for(args.tag, n, args.body_bytes, planned_ms + int(n * 1000 / args.rate))
              for n in range(n_events)]
    started = [0.0] * n_events
    answered = [0.0] * n_events
    status = [""] * n_events
    headers = {"Content-Type": "application/json", "X-Relay-Secret": args.secret}
    in_flight = 0
    max_in_flight = 0
    gc.collect()
    gc.freeze()

    connector = aiohttp.TCPConnector(limit=args.conns, limit_per_host=args.conns)
    timeout = aiohttp.ClientTimeout(total=args.timeout)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        loop = asyncio.get_running_loop()

        async def send(n):
            nonlocal in_flight, max_in_flight
            started[n] = time.time() * 1000
            in_flight += 1
            max_in_flight = max(max_in_flight, in_flight)
            try:
                async with session.post(args.url, data=events[n][2], headers=headers) as r:
                    await r.read()
                    status[n] = str(r.status)
            except asyncio.TimeoutError:
                status[n] = "timeout"
            except (aiohttp.ClientError, OSError) as e:
                status[n] = f"error:{type(e).__name__}"
            answered[n] = time.time() * 1000
            in_flight -= 1

        # Both clocks read at one moment: due times are kept on the loop's monotonic clock
        # and written as wall-clock ms (the CMS simulator stamps its writes with the wall
        # clock of this machine).
        ru0 = resource.getrusage(resource.RUSAGE_SELF)
        t0_loop = loop.time() + 0.05
        t0_wall_ms = (time.time() + 0.05) * 1000
        tasks = set()
        n = 0
        while n < n_events:
            due_now = min(n_events, int((loop.time() - t0_loop) * args.rate) + 1)
            while n < due_now:
                t = asyncio.create_task(send(n))
                tasks.add(t)
                t.add_done_callback(tasks.discard)
                n += 1
            if n < n_events:
                await asyncio.sleep(max(0.0, t0_loop + n / args.rate - loop.time()))
        if tasks:
            await asyncio.gather(*tasks)
        ru1 = resource.getrusage(resource.RUSAGE_SELF)

    due = [t0_wall_ms + k * 1000 / args.rate for k in range(n_events)]
    lags = sorted(s - d for s, d in zip(started, due))
    with open(args.out, "w") as f:
        f.write("n\tconversation\tevent_id\tdue_ms\tstarted_ms\tanswered_ms\tstatus\n")
        for k in range(n_events):
            conv, event_id, _ = events[k]
            f.write(f"{k}\t{conv}\t{event_id}\t{due[k]:.3f}\t{started[k]:.3f}\t{answered[k]:.3f}\t{status[k]}\n")
    by_status = {}
    for s in status:
        by_status[s] = by_status.get(s, 0) + 1
    answer_ms = sorted(a - s for a, s in zip(answered, started))
    summary = {
        "sent": n_events, "rate": args.rate, "seconds": args.seconds,
        "send_span_s": round((max(started) - min(started)) / 1000, 3) if n_events else 0,
        "by_status": by_status,
        "late": sum(1 for x in lags if x > args.late_ms), "late_ms": args.late_ms,
        "lag_p50_ms": percentile(lags, 50), "lag_p99_ms": percentile(lags, 99),
        "lag_max_ms": lags[-1] if lags else None,
        "answer_p50_ms": percentile(answer_ms, 50), "answer_p99_ms": percentile(answer_ms, 99),
        "max_in_flight": max_in_flight,
        # The sender's own CPU while sending (it shares the machine with what it measures).
        "cpu_us_per_event": round(((ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)) / max(1, n_events) * 1e6, 1),
    }
    print("E2E " + json.dumps(summary, separators=(",", ":")), flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", required=True)
    p.add_argument("--secret", default="")
    p.add_argument("--rate", type=float, required=True, help="events per second")
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--tag", required=True, help="unique per run: conversation ids are TAG-N")
    p.add_argument("--body-bytes", type=int, default=1024)
    p.add_argument("--conns", type=int, default=256, help="connections at most")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per request")
    p.add_argument("--late-ms", type=float, default=10.0)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    try:
        import uvloop
    except ImportError:
        asyncio.run(run(args))
    else:
        if hasattr(uvloop, "run"):
            uvloop.run(run(args))
        else:
            uvloop.install()
            asyncio.run(run(args))


if __name__ == "__main__":
    main()
