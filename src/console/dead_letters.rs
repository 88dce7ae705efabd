//! The dead-letter pages: the filtered list, one dead letter in full (headers, decoded
//! record, attempts, first failure, last error), and replay with a dry run first.
//!
//! Invariants: replay calls [`replay_dead_letters`] exactly as `genesys-relay dlq replay`
//! does (same selection rules, fresh attempts, `relay-replayed-from`); the confirmation
//! replays the selection the dry run counted (resolved to event ids), except "everything"
//! with no filter, which is `--all`. Header values and payload fields whose names mark a
//! credential are shown as `[redacted]`.

use super::html::{self, attr, csrf_field, esc, query_value, table, Tab};
use super::{blocking, html_response, kafka_view, Session};
use crate::clock::format_time_ms;
use crate::operator::{
    list_dead_letters, replay_dead_letters, DeadLetter, ReplayReport, ReplaySelection,
};
use crate::schema::{AvroRecord, RawEvent};
use rdkafka::message::{Headers, OwnedMessage};
use rdkafka::Message;
use std::collections::BTreeSet;
use std::fmt::Write;
use warp::http::{Response, StatusCode};
use warp::hyper::Body;

/// Rows shown on the list page (newest first); the counts cover every match.
const MAX_ROWS: usize = 500;
/// Event ids listed on the confirmation page.
const MAX_IDS_SHOWN: usize = 50;
/// Characters of the error shown in the list.
const ERROR_CHARS: usize = 120;

/// The list filters, from the query string or the replay form.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Filter {
    pub(super) route: String,
    pub(super) class: String,
    /// Case-insensitive text in the error (or the event id).
    pub(super) text: String,
    /// First failure at or after (UTC, `YYYY-MM-DDTHH:MM[:SS]`).
    pub(super) since: String,
    /// First failure before (UTC).
    pub(super) until: String,
}

impl Filter {
    pub(super) fn from_pairs(pairs: &[(String, String)]) -> Self {
        let get = |k: &str| {
            pairs
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.trim().to_string())
                .unwrap_or_default()
        };
        Filter {
            route: get("route"),
            class: get("class"),
            text: get("q"),
            since: get("since"),
            until: get("until"),
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        *self == Filter::default()
    }

    pub(super) fn matches(&self, d: &DeadLetter) -> bool {
        let eq =
            |want: &str, have: &Option<String>| want.is_empty() || have.as_deref() == Some(want);
        let text = self.text.to_lowercase();
        let text_ok = text.is_empty()
            || d.error
                .as_deref()
                .is_some_and(|e| e.to_lowercase().contains(&text))
            || d.event_id
                .as_deref()
                .is_some_and(|e| e.to_lowercase().contains(&text));
        let at = d.first_failure_at_ms;
        let since_ok = parse_utc(&self.since).is_none_or(|s| at.is_some_and(|a| a >= s));
        let until_ok = parse_utc(&self.until).is_none_or(|u| at.is_some_and(|a| a < u));
        eq(&self.route, &d.route) && eq(&self.class, &d.class) && text_ok && since_ok && until_ok
    }

    /// The filter as hidden form fields.
    fn hidden(&self) -> String {
        [
            ("route", &self.route),
            ("class", &self.class),
            ("q", &self.text),
            ("since", &self.since),
            ("until", &self.until),
        ]
        .iter()
        .map(|(k, v)| format!("<input type=\"hidden\" name=\"{k}\" value=\"{}\">", attr(v)))
        .collect()
    }

    fn query(&self) -> String {
        format!(
            "route={}&class={}&q={}&since={}&until={}",
            query_value(&self.route),
            query_value(&self.class),
            query_value(&self.text),
            query_value(&self.since),
            query_value(&self.until)
        )
    }
}

/// `YYYY-MM-DDTHH:MM[:SS[.fff]][Z]` (or a space for `T`) as UTC Unix milliseconds.
pub(super) fn parse_utc(s: &str) -> Option<i64> {
    let s = s.trim().trim_end_matches('Z');
    if s.is_empty() {
        return None;
    }
    let (date, time) = s.split_once(['T', ' ']).unwrap_or((s, "00:00"));
    let mut d = date.split('-').map(|p| p.parse::<i32>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut t = hms.split(':').map(|p| p.parse::<u8>().ok());
    let (h, min) = (t.next()??, t.next()??);
    let sec = t.next().flatten().unwrap_or(0);
    let date = time::Date::from_calendar_date(
        y,
        time::Month::try_from(u8::try_from(m).ok()?).ok()?,
        u8::try_from(day).ok()?,
    )
    .ok()?;
    let tm = time::Time::from_hms(h, min, sec).ok()?;
    let ms: i64 = format!("{frac:0<3}").get(..3)?.parse().ok()?;
    Some(
        time::PrimitiveDateTime::new(date, tm)
            .assume_utc()
            .unix_timestamp()
            * 1000
            + ms,
    )
}

fn cell(v: &Option<String>) -> String {
    v.as_deref()
        .map_or("<span class=\"muted\">–</span>".into(), esc)
}

fn short(e: &str) -> String {
    let flat: String = e
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if flat.chars().count() <= ERROR_CHARS {
        flat
    } else {
        format!(
            "{}…",
            flat.chars().take(ERROR_CHARS - 1).collect::<String>()
        )
    }
}

fn select(name: &str, label: &str, options: &BTreeSet<String>, current: &str) -> String {
    let mut out = format!(
        "<label>{label}<select name=\"{name}\" id=\"filter-{name}\"><option value=\"\">any</option>"
    );
    for o in options {
        let sel = if o == current { " selected" } else { "" };
        let _ = write!(
            out,
            "<option value=\"{0}\"{sel}>{1}</option>",
            attr(o),
            esc(o)
        );
    }
    out.push_str("</select></label>");
    out
}

/// `GET /console/dead-letters`.
pub(super) async fn list(s: &Session<'_>, query: &str) -> Response<Body> {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let filter = Filter::from_pairs(&pairs);
    let ctx = &s.console.ctx;
    let csrf = s.csrf();
    let frame = s.frame("Dead letters", Tab::DeadLetters, csrf.as_deref());
    let letters = match list_dead_letters(&ctx.operator, None).await {
        Ok(l) => l,
        Err(e) => {
            let body = format!(
                "<div class=\"notice bad\">Cannot read <code>{}</code>: {}</div>",
                esc(&ctx.operator.topics.dlq),
                esc(&e.to_string())
            );
            return html_response(StatusCode::BAD_GATEWAY, html::page(&frame, &body));
        }
    };
    let routes: BTreeSet<String> = letters.iter().filter_map(|d| d.route.clone()).collect();
    let classes: BTreeSet<String> = letters.iter().filter_map(|d| d.class.clone()).collect();
    let mut matched: Vec<&DeadLetter> = letters.iter().filter(|d| filter.matches(d)).collect();
    matched
        .sort_by_key(|d| std::cmp::Reverse((d.first_failure_at_ms, d.topic_partition, d.offset)));

    let mut out = String::new();
    let _ = write!(
        out,
        "<form method=\"get\" action=\"/console/dead-letters\" class=\"filters\" id=\"filters\">{}{}\
<label>Error or event id contains<input type=\"search\" name=\"q\" id=\"filter-q\" value=\"{}\" size=\"28\"></label>\
<label>First failure from (UTC)<input type=\"datetime-local\" name=\"since\" id=\"filter-since\" value=\"{}\"></label>\
<label>until (UTC)<input type=\"datetime-local\" name=\"until\" id=\"filter-until\" value=\"{}\"></label>\
<button type=\"submit\" id=\"apply-filter\">Filter</button> <a href=\"/console/dead-letters\">clear</a></form>",
        select("route", "Route", &routes, &filter.route),
        select("class", "Class", &classes, &filter.class),
        attr(&filter.text),
        attr(&filter.since),
        attr(&filter.until),
    );
    let _ = write!(
        out,
        "<p id=\"match-count\"><b>{}</b> of {} dead letters in <code>{}</code> match{}.</p>",
        matched.len(),
        letters.len(),
        esc(&ctx.operator.topics.dlq),
        if matched.len() > MAX_ROWS {
            format!("; the newest {MAX_ROWS} are shown")
        } else {
            String::new()
        }
    );
    let rows: Vec<Vec<String>> = matched
        .iter()
        .take(MAX_ROWS)
        .map(|d| {
            let check = d.event_id.as_deref().map_or(
                "<span class=\"muted\" title=\"no event id: only replay-all reaches it\">–</span>".into(),
                |id| format!("<input type=\"checkbox\" name=\"event_id\" value=\"{}\" aria-label=\"select {}\">", attr(id), attr(id)),
            );
            let link = format!(
                "<a href=\"/console/dead-letters/{}/{}\" class=\"open\">{}</a>",
                d.topic_partition,
                d.offset,
                d.event_id.as_deref().map_or("(no event id)".into(), esc)
            );
            vec![
                check,
                link,
                cell(&d.route),
                cell(&d.class),
                d.attempts.map_or("–".into(), |a| a.to_string()),
                d.first_failure_at_ms.map_or("–".into(), |t| {
                    format!("<span class=\"time\">{}</span>", format_time_ms(t))
                }),
                d.error.as_deref().map_or("–".into(), |e| format!("<span class=\"err\">{}</span>", esc(&short(e)))),
                format!("{}/{}", d.topic_partition, d.offset),
            ]
        })
        .collect();
    let csrf_field = csrf_field(csrf.as_deref());
    let _ = write!(
        out,
        "<form method=\"post\" action=\"/console/dead-letters/replay\" id=\"replay-form\">{csrf_field}{}\
<input type=\"hidden\" name=\"step\" value=\"preview\">\
<div class=\"actions\"><button type=\"submit\" name=\"scope\" value=\"selected\" id=\"replay-selected\">Replay selected…</button>\
<button type=\"submit\" name=\"scope\" value=\"filtered\" class=\"secondary\" id=\"replay-filtered\">Replay all {} matching…</button>\
<span class=\"muted\">Both show a dry-run count first and ask for confirmation.</span></div>{}</form>",
        filter.hidden(),
        matched.len(),
        table(
            "dead-letters",
            &["", "event id", "route", "class", "attempts", "first failure (UTC)", "last error", "p/offset"],
            &rows
        ),
    );
    html_response(StatusCode::OK, html::page(&frame, &out))
}

/// Whether a header or field name marks a credential.
pub(super) fn is_secret_name(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    [
        "authorization",
        "token",
        "secret",
        "password",
        "passwd",
        "cookie",
        "api-key",
        "apikey",
        "api_key",
        "signature",
        "credential",
        "private",
    ]
    .iter()
    .any(|s| n.contains(s))
}

/// `value` with every field whose name marks a credential replaced by `[redacted]`.
pub(super) fn redact_json(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(m) => {
            for (k, v) in m.iter_mut() {
                if is_secret_name(k) {
                    *v = serde_json::Value::String("[redacted]".into());
                } else {
                    redact_json(v);
                }
            }
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(redact_json),
        _ => {}
    }
}

/// Which writer schema framed `bytes`, in words.
pub(super) fn schema_version(bytes: &[u8]) -> String {
    let history = RawEvent::history();
    match bytes {
        [0xC3, 0x01, ..] if bytes.len() >= 10 => {
            let fp = hex::encode(&bytes[2..10]);
            if RawEvent::single_object_headers().frames(bytes) {
                format!(
                    "RawEvent v{} (current), single-object fingerprint {fp}",
                    history.len() + 1
                )
            } else if let Some(i) = history.iter().position(|w| w.headers.frames(bytes)) {
                format!(
                    "RawEvent v{} (schemas/history), single-object fingerprint {fp}",
                    i + 1
                )
            } else {
                format!("unknown single-object fingerprint {fp}")
            }
        }
        [0, a, b, c, d, ..] => format!(
            "schema registry id {} (Confluent wire format)",
            u32::from_be_bytes([*a, *b, *c, *d])
        ),
        _ => "no Avro header".into(),
    }
}

/// `GET /console/dead-letters/{partition}/{offset}`.
pub(super) async fn detail(s: &Session<'_>, partition: i32, offset: i64) -> Response<Body> {
    let ctx = &s.console.ctx;
    let csrf = s.csrf();
    let title = format!("Dead letter {partition}/{offset}");
    let frame = s.frame(&title, Tab::DeadLetters, csrf.as_deref());
    let (cfg, topic) = (ctx.operator.kafka.clone(), ctx.operator.topics.dlq.clone());
    let msg = match blocking(move || kafka_view::read_one(&cfg, &topic, partition, offset)).await {
        Ok(Some(m)) => m,
        Ok(None) => {
            return html_response(
                StatusCode::NOT_FOUND,
                html::page(&frame, "<div class=\"notice\">No such record: it was never written or is past retention.</div><p><a href=\"/console/dead-letters\">All dead letters</a></p>"),
            )
        }
        Err(e) => {
            return html_response(
                StatusCode::BAD_GATEWAY,
                html::page(&frame, &format!("<div class=\"notice bad\">Cannot read the dead letter: {}</div>", esc(&e))),
            )
        }
    };
    let d = DeadLetter::from_message(&msg);
    let mut out = String::new();
    let kv = |out: &mut String, k: &str, v: String| {
        let _ = write!(out, "<dt>{}</dt><dd>{v}</dd>", esc(k));
    };
    out.push_str("<dl class=\"kv\" id=\"summary\">");
    kv(&mut out, "event id", cell(&d.event_id));
    kv(&mut out, "route", cell(&d.route));
    kv(&mut out, "error class", cell(&d.class));
    kv(
        &mut out,
        "attempts",
        d.attempts.map_or("–".into(), |a| a.to_string()),
    );
    kv(
        &mut out,
        "first failure (UTC)",
        d.first_failure_at_ms.map_or("–".into(), format_time_ms),
    );
    kv(
        &mut out,
        "last error",
        d.error.as_deref().map_or("–".into(), |e| {
            format!("<span class=\"err\" id=\"last-error\">{}</span>", esc(e))
        }),
    );
    kv(
        &mut out,
        "failed at",
        match (&d.original_topic, d.original_partition, d.original_offset) {
            (Some(t), Some(p), Some(o)) => format!("<code>{}</code> {p}/{o}", esc(t)),
            _ => "–".into(),
        },
    );
    kv(&mut out, "record key", cell(&d.key));
    kv(
        &mut out,
        "dead-letter position",
        format!(
            "<code>{}</code> {partition}/{offset}",
            esc(&ctx.operator.topics.dlq)
        ),
    );
    out.push_str("</dl>");

    if let Some(id) = &d.event_id {
        let csrf_field = csrf_field(csrf.as_deref());
        let _ = write!(
            out,
            "<form method=\"post\" action=\"/console/dead-letters/replay\" class=\"actions\" id=\"replay-one\">{csrf_field}\
<input type=\"hidden\" name=\"step\" value=\"preview\"><input type=\"hidden\" name=\"scope\" value=\"selected\">\
<input type=\"hidden\" name=\"event_id\" value=\"{}\"><button type=\"submit\" id=\"replay-this\">Replay this event…</button>\
<span class=\"muted\">dry run first, then confirm</span></form>",
            attr(id)
        );
    }

    out.push_str("<h2>Headers</h2>");
    out.push_str(&headers_table(&msg));
    out.push_str("<h2>Record</h2>");
    out.push_str(&record_view(s, &msg));
    out.push_str("<p><a href=\"/console/dead-letters\">← All dead letters</a></p>");
    html_response(StatusCode::OK, html::page(&frame, &out))
}

fn headers_table(msg: &OwnedMessage) -> String {
    let rows: Vec<Vec<String>> = msg
        .headers()
        .map(|h| {
            h.iter()
                .map(|h| {
                    let value = if is_secret_name(h.key) {
                        "<span class=\"muted\">[redacted]</span>".to_string()
                    } else {
                        match h.value.map(std::str::from_utf8) {
                            None => "<span class=\"muted\">(null)</span>".into(),
                            Some(Ok(v)) => esc(v),
                            Some(Err(_)) => format!(
                                "<span class=\"muted\">{} bytes, not UTF-8</span>",
                                h.value.map_or(0, <[u8]>::len)
                            ),
                        }
                    };
                    vec![format!("<code>{}</code>", esc(h.key)), value]
                })
                .collect()
        })
        .unwrap_or_default();
    table("headers", &["header", "value"], &rows)
}

fn record_view(s: &Session<'_>, msg: &OwnedMessage) -> String {
    let Some(bytes) = msg.payload() else {
        return "<p class=\"muted\">The record has no value.</p>".into();
    };
    let mut out = format!(
        "<p>Schema: <b id=\"schema-version\">{}</b> · {} bytes</p>",
        esc(&schema_version(bytes)),
        bytes.len()
    );
    match s.console.ctx.codec.decode::<RawEvent>(bytes) {
        Ok(ev) => {
            let mut payload: serde_json::Value = serde_json::from_str(&ev.payload)
                .unwrap_or(serde_json::Value::String(ev.payload.clone()));
            redact_json(&mut payload);
            let pretty = serde_json::to_string_pretty(&payload).unwrap_or_default();
            out.push_str("<dl class=\"kv\" id=\"record\">");
            let opt = |v: &Option<String>| cell(v);
            for (k, v) in [
                ("event_id", esc(&ev.event_id)),
                ("event_type", esc(&ev.event_type)),
                ("shape", esc(ev.shape.as_str())),
                ("topic_name", opt(&ev.topic_name)),
                ("conversation_id", opt(&ev.conversation_id)),
                ("participant_id", opt(&ev.participant_id)),
                ("guest_id", opt(&ev.guest_id)),
                (
                    "event_time",
                    ev.event_time_ms.map_or("–".into(), format_time_ms),
                ),
                ("received_at", format_time_ms(ev.received_at_ms)),
                ("traceparent", opt(&ev.traceparent)),
            ] {
                let _ = write!(out, "<dt>{k}</dt><dd>{v}</dd>");
            }
            out.push_str("</dl>");
            let _ = write!(
                out,
                "<h2>Payload as delivered</h2><pre id=\"payload\">{}</pre>",
                esc(&pretty)
            );
        }
        Err(e) => {
            let _ = write!(
                out,
                "<div class=\"notice bad\">Not a decodable RawEvent: {}</div><pre>{}</pre>",
                esc(&e.to_string()),
                esc(&hex_dump(bytes))
            );
        }
    }
    out
}

fn hex_dump(bytes: &[u8]) -> String {
    bytes
        .chunks(16)
        .take(64)
        .enumerate()
        .map(|(i, c)| format!("{:06x}  {}\n", i * 16, hex::encode(c)))
        .collect()
}

/// The replay selection a form names: `all=1`, or its `event_id` fields.
fn selection_from(form: &[(String, String)]) -> ReplaySelection {
    let all = form.iter().any(|(k, v)| k == "all" && v == "1");
    let mut ids: Vec<String> = Vec::new();
    for (k, v) in form {
        if k == "event_id" && !v.is_empty() && !ids.contains(v) {
            ids.push(v.clone());
        }
    }
    if all {
        ids.clear();
    }
    ReplaySelection {
        event_ids: ids,
        all,
    }
}

/// `POST /console/dead-letters/replay`: `step=preview` (dry run and confirmation form) or
/// `step=confirm` (replays).
pub(super) async fn replay(s: &Session<'_>, form: &[(String, String)]) -> Response<Body> {
    let ctx = &s.console.ctx;
    let csrf = s.csrf();
    let get = |k: &str| {
        form.iter()
            .find(|(n, _)| n == k)
            .map_or("", |(_, v)| v.as_str())
    };
    let confirm = get("step") == "confirm";
    let title = if confirm { "Replay" } else { "Replay: dry run" };
    let frame = s.frame(title, Tab::DeadLetters, csrf.as_deref());
    let mut out = String::new();

    let mut sel = selection_from(form);
    let mut unreachable = 0;
    if !confirm && get("scope") == "filtered" {
        let filter = Filter::from_pairs(form);
        if filter.is_empty() {
            sel = ReplaySelection {
                event_ids: Vec::new(),
                all: true,
            };
        } else {
            match list_dead_letters(&ctx.operator, None).await {
                Ok(letters) => {
                    let mut ids = Vec::new();
                    for d in letters.iter().filter(|d| filter.matches(d)) {
                        match &d.event_id {
                            Some(id) if !ids.contains(id) => ids.push(id.clone()),
                            Some(_) => {}
                            None => unreachable += 1,
                        }
                    }
                    sel = ReplaySelection {
                        event_ids: ids,
                        all: false,
                    };
                }
                Err(e) => {
                    let _ = write!(
                        out,
                        "<div class=\"notice bad\">{}</div>",
                        esc(&e.to_string())
                    );
                    return html_response(StatusCode::BAD_GATEWAY, html::page(&frame, &out));
                }
            }
            let _ = write!(out, "<p>Filter: <code>{}</code></p>", esc(&filter.query()));
        }
    }
    if !sel.all && sel.event_ids.is_empty() {
        out.push_str("<div class=\"notice\" id=\"nothing-selected\">Nothing selected: tick dead letters, or use “Replay all matching”.</div><p><a href=\"/console/dead-letters\">← Dead letters</a></p>");
        return html_response(StatusCode::BAD_REQUEST, html::page(&frame, &out));
    }
    let report = match replay_dead_letters(&ctx.operator, &ctx.producer, &sel, !confirm).await {
        Ok(r) => r,
        Err(e) => {
            let _ = write!(
                out,
                "<div class=\"notice bad\" id=\"replay-error\">Replay failed: {}</div>",
                esc(&e.to_string())
            );
            return html_response(StatusCode::BAD_GATEWAY, html::page(&frame, &out));
        }
    };
    if confirm {
        tracing::info!(
            replayed = report.replayed,
            matched = report.matched,
            all = sel.all,
            "console replay"
        );
        let _ = write!(
            out,
            "<div class=\"notice ok\" id=\"replay-result\">Replayed <b id=\"replayed-count\">{}</b> dead letter(s) to <code>{}</code>, each with a fresh attempt count and <code>relay-replayed-from</code>.</div>",
            report.replayed,
            esc(&ctx.operator.topics.raw)
        );
        out.push_str(&report_details(&report, &sel));
        out.push_str("<p><a href=\"/console/dead-letters\">← Dead letters</a> · <a href=\"/console\">Overview</a> (the replayed events show up under synced or, if they fail again, as new dead letters)</p>");
        return html_response(StatusCode::OK, html::page(&frame, &out));
    }

    let _ = write!(
        out,
        "<div class=\"notice\" id=\"dry-run\">Dry run: <b id=\"dry-run-count\">{}</b> dead letter(s) would be replayed to <code>{}</code>. Nothing has been written yet.</div>",
        report.matched,
        esc(&ctx.operator.topics.raw)
    );
    if unreachable > 0 {
        let _ = write!(out, "<p class=\"muted\">{unreachable} matching dead letter(s) have no event id; only “replay all” without a filter (or <code>dlq replay --all</code>) reaches them.</p>");
    }
    out.push_str(&report_details(&report, &sel));
    if report.matched == 0 {
        out.push_str("<p><a href=\"/console/dead-letters\">← Dead letters</a></p>");
        return html_response(StatusCode::OK, html::page(&frame, &out));
    }
    let csrf_field = csrf_field(csrf.as_deref());
    let selection_fields: String = if sel.all {
        "<input type=\"hidden\" name=\"all\" value=\"1\">".into()
    } else {
        sel.event_ids
            .iter()
            .map(|id| {
                format!(
                    "<input type=\"hidden\" name=\"event_id\" value=\"{}\">",
                    attr(id)
                )
            })
            .collect()
    };
    let _ = write!(
        out,
        "<form method=\"post\" action=\"/console/dead-letters/replay\" class=\"actions\" id=\"confirm-form\">{csrf_field}{selection_fields}\
<input type=\"hidden\" name=\"step\" value=\"confirm\">\
<button type=\"submit\" class=\"danger\" id=\"confirm-replay\">Replay {} dead letter(s)</button>\
<a href=\"/console/dead-letters\">Cancel</a></form>",
        report.matched
    );
    html_response(StatusCode::OK, html::page(&frame, &out))
}

fn report_details(r: &ReplayReport, sel: &ReplaySelection) -> String {
    let mut out = String::from("<dl class=\"kv\" id=\"replay-report\">");
    let scope = if sel.all {
        "every dead letter (<code>--all</code>)".to_string()
    } else {
        let shown: Vec<String> = sel
            .event_ids
            .iter()
            .take(MAX_IDS_SHOWN)
            .map(|i| format!("<code>{}</code>", esc(i)))
            .collect();
        let more = sel.event_ids.len().saturating_sub(MAX_IDS_SHOWN);
        format!(
            "{}{}",
            shown.join(" "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        )
    };
    let _ = write!(out, "<dt>selection</dt><dd>{scope}</dd>");
    let _ = write!(out, "<dt>to replay</dt><dd>{}</dd>", r.matched);
    let _ = write!(out, "<dt>older copies skipped</dt><dd>{} (an event's newest dead letter is the one replayed)</dd>", r.superseded);
    let list = |v: &[String]| {
        if v.is_empty() {
            "none".to_string()
        } else {
            v.iter()
                .map(|i| format!("<code>{}</code>", esc(i)))
                .collect::<Vec<_>>()
                .join(" ")
        }
    };
    let _ = write!(
        out,
        "<dt>already synced (not replayed)</dt><dd>{}</dd>",
        list(&r.already_synced)
    );
    let _ = write!(out, "<dt>not found</dt><dd>{}</dd>", list(&r.missing));
    out.push_str("</dl>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(route: &str, class: &str, error: &str, at: i64) -> DeadLetter {
        DeadLetter {
            topic_partition: 0,
            offset: 1,
            key: None,
            event_id: Some("evt-1".into()),
            route: Some(route.into()),
            class: Some(class.into()),
            attempts: Some(1),
            first_failure_at_ms: Some(at),
            error: Some(error.into()),
            original_topic: None,
            original_partition: None,
            original_offset: None,
            value_len: 0,
        }
    }

    #[test]
    fn filters_by_route_class_text_and_time() {
        let d = letter(
            "guest_sync",
            "permanent",
            "CMS answered HTTP 422",
            parse_utc("2026-12-01T10:00").unwrap(),
        );
        let f = |pairs: &[(&str, &str)]| {
            Filter::from_pairs(
                &pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect::<Vec<_>>(),
            )
        };
        assert!(f(&[]).matches(&d));
        assert!(f(&[("route", "guest_sync"), ("class", "permanent")]).matches(&d));
        assert!(!f(&[("route", "forward")]).matches(&d));
        assert!(f(&[("q", "http 422")]).matches(&d));
        assert!(f(&[("q", "EVT-1")]).matches(&d), "event id");
        assert!(!f(&[("q", "503")]).matches(&d));
        assert!(f(&[("since", "2026-12-01T10:00"), ("until", "2026-12-01T10:01")]).matches(&d));
        assert!(!f(&[("since", "2026-12-01T10:01")]).matches(&d));
        assert!(!f(&[("until", "2026-12-01T10:00")]).matches(&d));
    }

    #[test]
    fn parses_utc_times() {
        assert_eq!(parse_utc("1970-01-01T00:00"), Some(0));
        assert_eq!(parse_utc("1970-01-01T00:00:01.5Z"), Some(1500));
        assert_eq!(parse_utc("2024-02-29 23:59:59"), Some(1_709_251_199_000));
        assert_eq!(parse_utc("2023-02-29T00:00"), None);
        assert_eq!(parse_utc("nonsense"), None);
        assert_eq!(parse_utc(""), None);
    }

    #[test]
    fn secrets_are_redacted() {
        assert!(is_secret_name("Authorization"));
        assert!(is_secret_name("X-Relay-Secret"));
        assert!(!is_secret_name("relay-event-id"));
        let mut v =
            serde_json::json!({"a": {"accessToken": "t", "keep": 1}, "list": [{"password": "p"}]});
        redact_json(&mut v);
        assert_eq!(v["a"]["accessToken"], "[redacted]");
        assert_eq!(v["a"]["keep"], 1);
        assert_eq!(v["list"][0]["password"], "[redacted]");
    }

    #[test]
    fn schema_version_names_the_writer() {
        let codec = crate::schema::Codec::single_object();
        let ev = RawEvent {
            event_id: "e".into(),
            event_type: "t".into(),
            shape: crate::schema::Shape::Envelope,
            conversation_id: None,
            guest_id: None,
            event_time_ms: None,
            received_at_ms: 0,
            payload: "{}".into(),
            traceparent: None,
            topic_name: None,
            participant_id: None,
            eventbridge_id: None,
        };
        let bytes = codec.encode(&ev).unwrap();
        assert!(
            schema_version(&bytes).starts_with("RawEvent v3 (current)"),
            "{}",
            schema_version(&bytes)
        );
        let v1 = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/raw_event_v1.avro"
        ))
        .unwrap();
        assert!(
            schema_version(&v1).starts_with("RawEvent v1"),
            "{}",
            schema_version(&v1)
        );
        assert_eq!(
            schema_version(&[0, 0, 0, 0, 7, 1]),
            "schema registry id 7 (Confluent wire format)"
        );
    }

    #[test]
    fn the_selection_comes_from_the_form() {
        let form = |p: &[(&str, &str)]| {
            p.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<Vec<_>>()
        };
        let s = selection_from(&form(&[
            ("event_id", "a"),
            ("event_id", "b"),
            ("event_id", "a"),
        ]));
        assert_eq!(s.event_ids, vec!["a", "b"]);
        assert!(!s.all);
        assert!(selection_from(&form(&[("all", "1"), ("event_id", "a")])).all);
    }
}
