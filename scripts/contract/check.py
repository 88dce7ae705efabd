"""Contract check of genesys-sim against the official Genesys Cloud Python SDK.

Requests every Platform API answer genesys-relay relies on from a running genesys-sim and
deserializes each into the SDK model the SDK itself would use for that endpoint
(`ApiClient.deserialize`, the same code path as the SDK's API classes). A check fails when:
- a field the relay reads is missing or empty,
- an enum field holds a value the SDK does not know (the SDK then stores
  "outdated_sdk_version"),
- a JSON key is not a field of the SDK model (the simulator invented it),
- a value cannot be deserialized into the declared type, or
- the behaviour the relay relies on is absent (a rejected topic, `nextUri` on page 1 of 3).

Usage: python check.py --base http://127.0.0.1:PORT [--client-id ID --client-secret S]
Exits 1 naming every failed check; 0 when all pass. Stdlib + PureCloudPlatformClientV2 only.
"""

import argparse
import base64
import datetime
import importlib.metadata
import json
import sys
import urllib.error
import urllib.parse
import urllib.request

import PureCloudPlatformClientV2 as sdk
from PureCloudPlatformClientV2 import models

OUTDATED = "outdated_sdk_version"


class Failures:
    def __init__(self):
        self.items = []
        self.passed = 0

    def check(self, name, ok, detail=""):
        if ok:
            self.passed += 1
        else:
            self.items.append(f"{name}: {detail}" if detail else name)
        return ok


class Raw:
    """The two things ApiClient.deserialize reads from a urllib3 response."""

    def __init__(self, data, content_type="application/json"):
        self.data = data
        self._ct = content_type

    def getheader(self, name, default=None):
        return self._ct if name.lower() == "content-type" else default


class Sim:
    def __init__(self, base, client_id, client_secret):
        self.base = base.rstrip("/")
        self.client_id = client_id
        self.client_secret = client_secret
        self.token = None
        self.api = sdk.ApiClient()

    def request(self, method, path, body=None, token=True, headers=None, form=None):
        url = path if path.startswith("http") else self.base + path
        hdrs = dict(headers or {})
        data = None
        if form is not None:
            data = urllib.parse.urlencode(form).encode()
            hdrs["Content-Type"] = "application/x-www-form-urlencoded"
        elif body is not None:
            data = json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        if token and self.token:
            hdrs["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(url, data=data, method=method, headers=hdrs)
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, dict(resp.headers), resp.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read().decode()

    def control(self, method, path, body=None):
        status, _, text = self.request(method, path, body=body, token=False)
        return status, text

    def deserialize(self, text, model):
        return self.api.deserialize(Raw(text), model)


def unknown_keys(data, model_name, path="$"):
    """JSON keys that are not fields of the SDK model (recursively through nested models)."""
    found = []
    if model_name.startswith("list["):
        inner = model_name[5:-1]
        for i, item in enumerate(data if isinstance(data, list) else []):
            found += unknown_keys(item, inner, f"{path}[{i}]")
        return found
    if model_name.startswith("dict("):
        inner = model_name[5:-1].split(", ", 1)[1]
        for k, v in (data if isinstance(data, dict) else {}).items():
            found += unknown_keys(v, inner, f"{path}.{k}")
        return found
    klass = getattr(models, model_name, None)
    if klass is None or not isinstance(data, dict):
        return found
    instance = klass()
    by_json = {json_key: instance.swagger_types[attr] for attr, json_key in instance.attribute_map.items()}
    for key, value in data.items():
        if key not in by_json:
            found.append(f"{path}.{key}")
        else:
            found += unknown_keys(value, by_json[key], f"{path}.{key}")
    return found


def outdated_enums(obj, path="$"):
    """Paths whose value the SDK replaced with "outdated_sdk_version" (an unknown enum)."""
    found = []
    if isinstance(obj, list):
        for i, item in enumerate(obj):
            found += outdated_enums(item, f"{path}[{i}]")
    elif isinstance(obj, dict):
        for k, v in obj.items():
            found += outdated_enums(v, f"{path}.{k}")
    elif hasattr(obj, "swagger_types"):
        for attr in obj.swagger_types:
            found += outdated_enums(getattr(obj, attr), f"{path}.{attr}")
    elif obj == OUTDATED:
        found.append(path)
    return found


def model_check(f, sim, name, status, text, model, want_status=200):
    """Status, deserialization, unknown keys, enums; returns the model (or None)."""
    if not f.check(f"{name}: HTTP status", status == want_status, f"got {status}, want {want_status}: {text[:300]}"):
        return None
    try:
        data = json.loads(text)
    except ValueError as e:
        f.check(f"{name}: JSON body", False, str(e))
        return None
    try:
        obj = sim.deserialize(text, model)
    except Exception as e:  # the SDK raises several types on a type mismatch
        f.check(f"{name}: deserializes into {model}", False, repr(e))
        return None
    f.check(f"{name}: deserializes into {model}", obj is not None, "None")
    extra = unknown_keys(data, model)
    f.check(f"{name}: only fields of {model}", not extra, ", ".join(extra[:10]))
    bad = outdated_enums(obj)
    f.check(f"{name}: enum values known to the SDK", not bad, ", ".join(bad[:10]))
    return obj


def nonempty(v):
    return v is not None and v != "" and v != []


def run(sim, f):
    # --- OAuth client credentials (src/genesys/token.rs) ---------------------------------
    auth = base64.b64encode(f"{sim.client_id}:{sim.client_secret}".encode()).decode()
    status, _, text = sim.request(
        "POST", "/oauth/token", token=False, headers={"Authorization": f"Basic {auth}"},
        form={"grant_type": "client_credentials"},
    )
    if not f.check("token: HTTP status", status == 200, f"{status} {text[:200]}"):
        return
    tok = json.loads(text)
    # The SDK's get_client_credentials_token reads `access_token`; the relay also reads
    # `expires_in` (seconds) and `token_type`.
    f.check("token: access_token", isinstance(tok.get("access_token"), str) and tok["access_token"], text)
    f.check("token: expires_in is an integer", isinstance(tok.get("expires_in"), int), text)
    f.check("token: token_type bearer", str(tok.get("token_type", "")).lower() == "bearer", text)
    sim.token = tok["access_token"]

    # --- Conversation (guest_sync, conversation_enrich) -----------------------------------
    status, _, text = sim.request("GET", "/api/v2/conversations/c0ffee00-0000-4000-8000-000000000001")
    conv = model_check(f, sim, "conversation", status, text, "Conversation")
    if conv:
        f.check("conversation: id", nonempty(conv.id))
        f.check("conversation: start_time is a datetime", isinstance(conv.start_time, datetime.datetime))
        f.check("conversation: participants", nonempty(conv.participants))
        customers = [p for p in conv.participants or [] if p.purpose == "customer"]
        f.check("conversation: a customer participant", len(customers) == 1)
        for p in customers:
            f.check("conversation: customer id", nonempty(p.id))
            f.check(
                "conversation: customer attributes are dict(str, str)",
                isinstance(p.attributes, dict) and all(isinstance(v, str) for v in p.attributes.values()),
            )
    status, _, text = sim.request("GET", "/api/v2/conversations/gone-1")
    err = model_check(f, sim, "missing conversation", status, text, "ErrorBody", want_status=404)
    if err:
        f.check("missing conversation: ErrorBody status/code/message", err.status == 404 and nonempty(err.code) and nonempty(err.message))

    # --- Notification channels (listen) ---------------------------------------------------
    status, _, text = sim.request("POST", "/api/v2/notifications/channels")
    channel = model_check(f, sim, "channel", status, text, "Channel")
    if not channel:
        return
    f.check("channel: id", nonempty(channel.id))
    f.check("channel: connect_uri is ws(s)://", str(channel.connect_uri or "").startswith(("ws://", "wss://")))
    f.check("channel: expires is a datetime", isinstance(channel.expires, datetime.datetime))
    status, _, text = sim.request("GET", "/api/v2/notifications/channels")
    listing = model_check(f, sim, "channel listing", status, text, "ChannelEntityListing")
    if listing:
        f.check("channel listing: entities", nonempty(listing.entities))

    subs = f"/api/v2/notifications/channels/{channel.id}/subscriptions"
    known_queue = "5a1e0000-0000-4000-8000-0000000c0de1"
    sim.control("POST", "/__sim/queues", {"ids": [known_queue]})
    good = f"v2.routing.queues.{known_queue}.conversations"
    unknown = "v2.routing.queues.5a1e0000-0000-4000-8000-00000000dead.conversations"
    placeholder = "v2.routing.queues.{id}.conversations"

    status, _, text = sim.request("PUT", subs, body=[{"id": good}])
    ok = model_check(f, sim, "subscriptions (known queue)", status, text, "ChannelTopicEntityListing")
    if ok:
        states = {e.id: e.state for e in ok.entities or []}
        f.check("subscriptions (known queue): state Permitted", states.get(good) == "Permitted", str(states))

    status, _, text = sim.request("PUT", subs + "?ignoreErrors=true", body=[{"id": good}, {"id": unknown}, {"id": placeholder}])
    mixed = model_check(f, sim, "subscriptions ignoreErrors=true", status, text, "ChannelTopicEntityListing")
    if mixed:
        by_id = {e.id: e for e in mixed.entities or []}
        f.check("subscriptions ignoreErrors=true: known queue Permitted", getattr(by_id.get(good), "state", None) == "Permitted", str(list(by_id)))
        for label, topic in (("unknown queue", unknown), ("placeholder {id}", placeholder)):
            e = by_id.get(topic)
            f.check(f"subscriptions ignoreErrors=true: {label} Rejected", getattr(e, "state", None) == "Rejected",
                    f"{topic}: {e.to_dict() if e else 'absent'}")
            f.check(f"subscriptions ignoreErrors=true: {label} rejection_reason", nonempty(getattr(e, "rejection_reason", None)))

    status, _, text = sim.request("PUT", subs, body=[{"id": good}, {"id": unknown}])
    f.check("subscriptions without ignoreErrors: unknown queue fails the request", status in (400, 403, 404), f"got {status}: {text[:200]}")
    if status >= 400:
        err = model_check(f, sim, "subscriptions without ignoreErrors", status, text, "ErrorBody", want_status=status)
        if err:
            f.check("subscriptions without ignoreErrors: ErrorBody code/message", nonempty(err.code) and nonempty(err.message))

    denied_status, _ = sim.control("PUT", "/__sim/notifications/settings",
                                   {"denied_topics": {"v2.users.{id}.conversations": ["conversation:communication:view"]}})
    if f.check("denied permissions can be simulated", denied_status == 200, f"PUT /__sim/notifications/settings: {denied_status}"):
        user_topic = "v2.users.0a0b0c0d-0000-4000-8000-000000000001.conversations"
        status, _, text = sim.request("POST", subs + "?ignoreErrors=true", body=[{"id": user_topic}])
        denied = model_check(f, sim, "subscriptions missing permission", status, text, "ChannelTopicEntityListing")
        if denied:
            e = {x.id: x for x in denied.entities or []}.get(user_topic)
            f.check("subscriptions missing permission: Rejected with missing_permissions",
                    e is not None and e.state == "Rejected" and e.missing_permissions == ["conversation:communication:view"],
                    e.to_dict() if e else "absent")
        sim.control("PUT", "/__sim/notifications/settings", {"denied_topics": {}})

    status, _, text = sim.request("POST", subs, body=[{"id": "v2.detail.events.conversation.c0ffee00-0000-4000-8000-000000000001.attributes"}])
    added = model_check(f, sim, "subscriptions POST (adds)", status, text, "ChannelTopicEntityListing")
    if added:
        f.check("subscriptions POST (adds): keeps the known queue", good in {e.id for e in added.entities or []})
    status, _, text = sim.request("GET", subs)
    model_check(f, sim, "subscriptions GET", status, text, "ChannelTopicEntityListing")

    # --- Queue listing, page 1 of 3 (RELAY_LISTEN_QUEUES=all) ------------------------------
    status, _, text = sim.request("GET", "/api/v2/routing/queues?pageSize=1&pageNumber=1")
    first = json.loads(text) if status == 200 else {}
    total_before = first.get("total", 0)
    sim.control("POST", "/__sim/queues", {"count": max(0, 3 - total_before)})
    status, _, text = sim.request("GET", "/api/v2/routing/queues?pageSize=1&pageNumber=1")
    page1 = model_check(f, sim, "queues page 1 of 3", status, text, "QueueEntityListing")
    if page1:
        f.check("queues page 1 of 3: page_count 3", page1.page_count == 3, str(page1.page_count))
        f.check("queues page 1 of 3: total", page1.total == 3, str(page1.total))
        f.check("queues page 1 of 3: entities have id and name",
                all(nonempty(q.id) and nonempty(q.name) for q in page1.entities or []) and len(page1.entities or []) == 1)
        f.check("queues page 1 of 3: next_uri", nonempty(page1.next_uri), "absent")
        f.check("queues page 1 of 3: no previous_uri", page1.previous_uri is None, str(page1.previous_uri))
        seen, uri, pages = [q.id for q in page1.entities or []], page1.next_uri, 1
        while uri and pages < 5:
            status, _, text = sim.request("GET", uri)
            page = model_check(f, sim, f"queues page {pages + 1} (nextUri)", status, text, "QueueEntityListing")
            if not page:
                break
            seen += [q.id for q in page.entities or []]
            uri, pages = page.next_uri, pages + 1
        if page1.next_uri:
            f.check("queues: nextUri walks 3 pages of distinct queues", pages == 3 and len(set(seen)) == 3, f"{pages} pages, {len(set(seen))} queues")

    # --- Process Automation triggers (triggers register) -----------------------------------
    status, _, text = sim.request("GET", "/api/v2/processautomation/triggers/topics?pageSize=200")
    topics = model_check(f, sim, "trigger topics", status, text, "TopicCursorEntityListing")
    names = []
    if topics:
        raw = json.loads(text).get("entities", [])
        f.check("trigger topics: entities are strings", raw and all(isinstance(t, str) for t in raw), str(raw[:3]))
        names = list(topics.entities or [])
        uri = topics.next_uri
        while uri and len(names) < 10000:
            status, _, text = sim.request("GET", uri)
            more = model_check(f, sim, "trigger topics next page", status, text, "TopicCursorEntityListing")
            if not more:
                break
            names += more.entities or []
            uri = more.next_uri
        for t in ("v2.detail.events.conversation.{id}.customer.start", "v2.detail.events.conversation.{id}.attributes"):
            f.check(f"trigger topics: lists {t}", t in names)

    topic = "v2.detail.events.conversation.{id}.customer.start"
    create = {
        "name": "contract-check",
        "topicName": topic,
        "target": {"type": "Workflow", "id": "wf-contract", "workflowTargetSettings": {"dataFormat": "Json"}},
        "matchCriteria": [{"jsonPath": "$.mediaType", "operator": "Equal", "value": "MESSAGE"}],
        "enabled": True,
    }
    status, _, text = sim.request("POST", "/api/v2/processautomation/triggers", body=create)
    trig = model_check(f, sim, "trigger create", status, text, "Trigger")
    if trig:
        f.check("trigger create: id, version, topic_name", nonempty(trig.id) and trig.version == 1 and trig.topic_name == topic)
        f.check("trigger create: target Workflow", trig.target is not None and trig.target.type == "Workflow")
        f.check("trigger create: data_format Json",
                trig.target is not None and trig.target.workflow_target_settings is not None
                and trig.target.workflow_target_settings.data_format == "Json")
        status, _, text = sim.request("GET", f"/api/v2/processautomation/triggers/{trig.id}")
        got = model_check(f, sim, "trigger get", status, text, "Trigger")
        if got:
            f.check("trigger get: same trigger", got.id == trig.id and got.version == trig.version)
        update = dict(create, version=trig.version)
        status, _, text = sim.request("PUT", f"/api/v2/processautomation/triggers/{trig.id}", body=update)
        upd = model_check(f, sim, "trigger update", status, text, "Trigger")
        if upd:
            f.check("trigger update: version bumped", upd.version == 2, str(upd.version))
    bad = dict(create, name="contract-bad-topic", topicName="v2.detail.events.conversation.{id}.customer.strat")
    status, _, text = sim.request("POST", "/api/v2/processautomation/triggers", body=bad)
    f.check("trigger create: unknown topicName refused", status == 400, f"got {status}")
    bad = dict(create, name="contract-bad-format")
    bad["target"] = {"type": "Workflow", "id": "wf", "workflowTargetSettings": {"dataFormat": "Xml"}}
    status, _, text = sim.request("POST", "/api/v2/processautomation/triggers", body=bad)
    f.check("trigger create: unknown dataFormat refused", status == 400, f"got {status}")
    for i in range(3):
        sim.request("POST", "/api/v2/processautomation/triggers", body=dict(create, name=f"contract-{i}"))
    status, _, text = sim.request("GET", "/api/v2/processautomation/triggers?pageSize=2")
    lst = model_check(f, sim, "trigger listing", status, text, "TriggerEntityListing")
    if lst:
        f.check("trigger listing: entities", len(lst.entities or []) == 2)
        f.check("trigger listing: next_uri on a first page", nonempty(lst.next_uri))

    # --- Rate limits: headers, a per-resource limit below the token's, 429 -----------------
    sim.control("POST", "/__sim/faults", {"rate_limit_per_minute": 300})
    status, _ = sim.control("PUT", "/__sim/genesys/settings",
                            {"resource_rate_limits": {"GET /api/v2/conversations/{conversationId}": 2}})
    if f.check("per-resource rate limit can be simulated", status == 200, f"PUT /__sim/genesys/settings: {status}"):
        answers = [sim.request("GET", "/api/v2/conversations/c0ffee00-0000-4000-8000-0000000000aa") for _ in range(3)]
        hdrs = {k.lower(): v for k, v in answers[0][1].items()}
        f.check("rate limit: inin-ratelimit-allowed reports the resource limit", hdrs.get("inin-ratelimit-allowed") == "2", str(hdrs.get("inin-ratelimit-allowed")))
        f.check("rate limit: inin-ratelimit-count/reset are integers",
                str(hdrs.get("inin-ratelimit-count", "")).isdigit() and str(hdrs.get("inin-ratelimit-reset", "")).isdigit(), str(hdrs))
        status, headers, text = answers[2]
        err = model_check(f, sim, "rate limit: third request", status, text, "ErrorBody", want_status=429)
        h = {k.lower(): v for k, v in headers.items()}
        f.check("rate limit: 429 carries Retry-After seconds", str(h.get("retry-after", "")).isdigit(), str(h))
        if err:
            f.check("rate limit: ErrorBody status 429", err.status == 429)
        sim.control("PUT", "/__sim/genesys/settings", {"resource_rate_limits": {}})
    sim.control("DELETE", "/__sim/faults")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("--client-id", default="sim-client")
    ap.add_argument("--client-secret", default="sim-secret")
    args = ap.parse_args()
    version = importlib.metadata.version("PureCloudPlatformClientV2")
    sim = Sim(args.base, args.client_id, args.client_secret)
    f = Failures()
    try:
        run(sim, f)
    except Exception as e:  # a crash is a failure too, named
        f.check("contract check ran to the end", False, repr(e))
    print(f"genesys contract check (PureCloudPlatformClientV2 {version}) against {args.base}: "
          f"{f.passed} checks passed, {len(f.items)} failed")
    for item in f.items:
        print(f"FAIL {item}")
    sys.exit(1 if f.items else 0)


if __name__ == "__main__":
    main()
