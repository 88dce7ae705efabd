-- wrk script of scripts/bench-matrix.sh: POSTs one Genesys Cloud notification per request
-- in the Amazon EventBridge shape the relay receives (docs/connecting.md), every request its
-- own conversation (so its own event id, which the relay derives from topicName + eventBody)
-- and exactly BENCH_BODY_BYTES long (default 1024: the ceiling run writes records of that
-- size). Environment:
--   BENCH_TAG        unique per wrk invocation (ids are TAG-THREAD-COUNTER)
--   BENCH_SECRET     sent as X-Relay-Secret (the relay's RELAY_WEBHOOK_SECRET)
--   BENCH_EVENT      attributes (default): an attributes detail event, 0 Genesys calls in
--                    guest_sync; start: a customer.start detail event without attributes,
--                    1 conversation GET in guest_sync (its default route is
--                    conversation_enrich: the worker bench routes it with RELAY_ROUTES)
--   BENCH_BODY_BYTES body length (default 1024)
--   BENCH_POOL       distinct requests per wrk thread (default 20000, 2000 with BENCH_UNIQUE), formatted ahead and
--                    sent in turn, so a request costs wrk a table lookup instead of string
--                    formatting (on a 2-core machine the generator shares the cores with
--                    the server under test)
--   BENCH_UNIQUE     1: when a thread has sent its whole pool it formats a new one with new
--                    ids, so no event id repeats (the worker's pre-fill: the worker skips a
--                    repeated id as a duplicate). Default 0: the pool is sent again, which
--                    the ingress does not mind (it writes every delivery; deduplication is
--                    the worker's) and which keeps formatting out of the measured window
-- done() prints one machine-readable line starting "BENCH " (read by the matrix script).

local tag = os.getenv("BENCH_TAG") or "wrk"
local secret = os.getenv("BENCH_SECRET") or ""
local kind = os.getenv("BENCH_EVENT") or "attributes"
local size = tonumber(os.getenv("BENCH_BODY_BYTES") or "1024")
local unique = os.getenv("BENCH_UNIQUE") == "1"
-- A unique run formats a pool per round, which stalls its thread: smaller rounds, shorter stalls.
local pool_size = tonumber(os.getenv("BENCH_POOL") or (unique and "2000" or "20000"))
local threads = {}
local pool = {}
local next_request = 0
local generation = 0

function setup(thread)
  thread:set("thread_no", #threads)
  table.insert(threads, thread)
end

local function body_for(conv, n)
  local topic, event_body, detail_type
  local now = os.time() * 1000
  if kind == "start" then
    topic = "v2.detail.events.conversation." .. conv .. ".customer.start"
    detail_type = "v2.detail.events.conversation.{id}.customer.start"
    event_body = string.format(
      '{"eventTime":%d,"conversationId":"%s","participantId":"p-%s","sessionId":"s-%s",' ..
      '"mediaType":"MESSAGE","messageType":"WEBMESSAGING","direction":"INBOUND","pad":"%%s"}',
      now, conv, conv, conv)
  else
    topic = "v2.detail.events.conversation." .. conv .. ".attributes"
    detail_type = "v2.detail.events.conversation.{id}.attributes"
    event_body = string.format(
      '{"eventTime":%d,"conversationId":"%s","participantId":"p-%s",' ..
      '"attributes":{"cart_value":"129.95","last_page":"/checkout/payment","session_id":"s-%s",' ..
      '"loyalty_tier":"gold","pad":"%%s"}}',
      now, conv, conv, conv)
  end
  local shell = string.format(
    '{"version":"0","id":"eb-%s","detail-type":"%s","source":"aws.partner/genesys.com/cloud/' ..
    'bench-org/bench","account":"123456789012","time":"2026-11-25T08:30:00Z",' ..
    '"region":"eu-central-1","resources":[],"detail":{"topicName":"%s","version":"2",' ..
    '"eventBody":%s,"metadata":{"CorrelationId":"c-%d"},"timestamp":"2026-11-25T08:30:00.123Z"}}',
    conv, detail_type, topic, event_body, n)
  -- The pad makes every body exactly `size` bytes whatever the counter's digits.
  local bare = string.format(shell, "")
  local pad = size - #bare
  if pad < 0 then pad = 0 end
  return string.format(shell, string.rep("x", pad))
end

-- Ids are TAG-THREAD-GENERATION-N: no two threads, and no two generations, share one.
local function fill_pool()
  local headers = { ["Content-Type"] = "application/json", ["X-Relay-Secret"] = secret }
  for n = 1, pool_size do
    local conv = string.format("%s-%d-%d-%d", tag, thread_no or 0, generation, n)
    pool[n] = wrk.format("POST", nil, headers, body_for(conv, n))
  end
end

function init(args)
  fill_pool()
end

function request()
  if next_request == pool_size then
    next_request = 0
    if unique then
      generation = generation + 1
      fill_pool()
    end
  end
  next_request = next_request + 1
  return pool[next_request]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH duration_us=%d requests=%d status_errors=%d connect=%d read=%d write=%d timeout=%d " ..
    "p50_us=%d p99_us=%d max_us=%d body_bytes=%d\n",
    summary.duration, summary.requests, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max, #body_for("x", 1)))
end
