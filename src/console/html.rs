//! HTML building blocks of the console: escaping, the page frame, the stylesheet.
//!
//! Invariant: every value that did not come from this file goes through [`esc`] (or
//! [`attr`]) before it reaches a page; pages load nothing but `/console/static/console.css`
//! (the Content-Security-Policy allows nothing else: no script, no inline style).

use std::fmt::Write;

/// Text escaped for an HTML element body.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Text escaped for a double-quoted attribute value (same rules as [`esc`]).
pub(crate) fn attr(s: &str) -> String {
    esc(s)
}

/// The hidden CSRF field of a form posted with the session cookie; empty for bearer
/// access, which needs none.
pub(crate) fn csrf_field(csrf: Option<&str>) -> String {
    csrf.map(|c| {
        format!(
            "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
            attr(c)
        )
    })
    .unwrap_or_default()
}

/// Text escaped for a URL query value.
pub(crate) fn query_value(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Which tab of the navigation is current.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tab {
    Overview,
    DeadLetters,
    Listen,
}

/// What the frame of a signed-in page shows besides the content.
pub(crate) struct Frame<'a> {
    pub(crate) title: &'a str,
    pub(crate) tab: Tab,
    /// The process serving the page (labels process-local numbers).
    pub(crate) process: &'a str,
    /// The session's CSRF token, for the sign-out form; `None` for bearer access.
    pub(crate) csrf: Option<&'a str>,
    /// Reload the page every this many seconds (live views).
    pub(crate) refresh_secs: Option<u32>,
}

/// A whole signed-in page.
pub(crate) fn page(f: &Frame<'_>, content: &str) -> String {
    let tab = |t: Tab, href: &str, label: &str| {
        let current = if f.tab == t {
            " class=\"current\" aria-current=\"page\""
        } else {
            ""
        };
        format!("<a href=\"{href}\"{current}>{label}</a>")
    };
    let refresh = f
        .refresh_secs
        .map(|s| format!("<meta http-equiv=\"refresh\" content=\"{s}\">"))
        .unwrap_or_default();
    let live = f
        .refresh_secs
        .map(|s| format!("<span class=\"live\">live · every {s} s</span>"))
        .unwrap_or_default();
    let sign_out = match f.csrf {
        Some(csrf) => format!(
            "<form method=\"post\" action=\"/console/logout\" class=\"inline\"><input type=\"hidden\" name=\"csrf\" value=\"{}\"><button type=\"submit\" class=\"link\">Sign out</button></form>",
            attr(csrf)
        ),
        None => "<span class=\"muted\">bearer token</span>".into(),
    };
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">{refresh}\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{title} · genesys-relay console</title><link rel=\"stylesheet\" href=\"/console/static/console.css\"></head>\
<body><header><span class=\"brand\">genesys-relay</span><nav>{o}{d}{l}</nav>\
<span class=\"process\" title=\"process-local numbers come from this process\">process: <b>{process}</b></span>{live}{sign_out}</header>\
<main><h1>{title}</h1>{content}</main></body></html>",
        title = esc(f.title),
        o = tab(Tab::Overview, "/console", "Overview"),
        d = tab(Tab::DeadLetters, "/console/dead-letters", "Dead letters"),
        l = tab(Tab::Listen, "/console/listen", "Listen"),
        process = esc(f.process),
    )
}

/// A page outside the signed-in frame (login, console off, refusals).
pub(crate) fn bare_page(title: &str, content: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{t} · genesys-relay console</title><link rel=\"stylesheet\" href=\"/console/static/console.css\"></head>\
<body class=\"bare\"><main class=\"narrow\"><p class=\"brand\">genesys-relay console</p><h1>{t}</h1>{content}</main></body></html>",
        t = esc(title)
    )
}

/// A table from a header row and escaped-or-built cells (cells are HTML).
pub(crate) fn table(id: &str, head: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = format!("<table id=\"{}\"><thead><tr>", attr(id));
    for h in head {
        let _ = write!(out, "<th>{}</th>", esc(h));
    }
    out.push_str("</tr></thead><tbody>");
    if rows.is_empty() {
        let _ = write!(
            out,
            "<tr><td colspan=\"{}\" class=\"muted\">none</td></tr>",
            head.len().max(1)
        );
    }
    for r in rows {
        out.push_str("<tr>");
        for c in r {
            let _ = write!(out, "<td>{c}</td>");
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
    out
}

/// A labelled figure for the summary row.
pub(crate) fn card(label: &str, value: &str, note: &str, tone: Tone) -> String {
    format!(
        "<div class=\"card {}\"><div class=\"label\">{}</div><div class=\"value\">{}</div><div class=\"note\">{}</div></div>",
        tone.class(),
        esc(label),
        esc(value),
        esc(note)
    )
}

/// How a figure should catch the eye.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tone {
    Calm,
    Warn,
    Bad,
}

impl Tone {
    fn class(self) -> &'static str {
        match self {
            Tone::Calm => "calm",
            Tone::Warn => "warn",
            Tone::Bad => "bad",
        }
    }
}

/// Where a section's numbers come from.
pub(crate) enum Source<'a> {
    /// Read from Kafka: the same from any process.
    Kafka,
    /// This process's own counters.
    Process(&'a str),
}

/// A section heading with its source badge.
pub(crate) fn section(title: &str, source: Source<'_>) -> String {
    let badge = match source {
        Source::Kafka => {
            "<span class=\"badge kafka\">from Kafka · same in every process</span>".to_string()
        }
        Source::Process(p) => format!(
            "<span class=\"badge local\">process-local · {}</span>",
            esc(p)
        ),
    };
    format!("<h2>{}{badge}</h2>", esc(title))
}

/// A number without needless decimals.
pub(crate) fn num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v:.2}")
    }
}

/// The stylesheet (served at `/console/static/console.css`).
pub(crate) const CSS: &str = r#"
:root{--bg:#f6f7f9;--fg:#1d2330;--muted:#6b7385;--line:#dde1e8;--accent:#2f5bd3;--bad:#c62f2f;--warn:#b7791f;--ok:#237a4b;--card:#fff}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 "DejaVu Sans",system-ui,sans-serif;background:var(--bg);color:var(--fg)}
header{display:flex;gap:18px;align-items:center;padding:10px 22px;background:#18202f;color:#e8ecf3;flex-wrap:wrap}
header .brand{font-weight:700;letter-spacing:.3px}
header nav a{color:#c5cde0;text-decoration:none;padding:6px 10px;border-radius:6px}
header nav a.current{background:#2f3b55;color:#fff}
header .process{margin-left:auto;color:#aab4c8;font-size:12px}
header .live{font-size:12px;color:#7fd1a4}
header button.link{background:none;border:0;color:#c5cde0;cursor:pointer;font:inherit;text-decoration:underline}
main{padding:18px 22px 40px;max-width:1280px}
main.narrow{max-width:460px;margin:8vh auto;background:var(--card);border:1px solid var(--line);border-radius:10px;padding:26px 30px}
body.bare .brand{color:var(--muted);margin:0}
h1{font-size:22px;margin:4px 0 14px}
h2{font-size:16px;margin:26px 0 8px;display:flex;gap:10px;align-items:center}
.badge{font-size:11px;font-weight:400;padding:2px 8px;border-radius:10px}
.badge.kafka{background:#e4ecff;color:#2a4aa3}
.badge.local{background:#fff1d6;color:#8a5a00}
.cards{display:flex;gap:12px;flex-wrap:wrap}
.card{background:var(--card);border:1px solid var(--line);border-left:4px solid var(--ok);border-radius:8px;padding:10px 14px;min-width:170px}
.card.warn{border-left-color:var(--warn)}.card.bad{border-left-color:var(--bad)}
.card .label{font-size:12px;color:var(--muted)}.card .value{font-size:24px;font-weight:700}.card .note{font-size:11px;color:var(--muted)}
table{border-collapse:collapse;background:var(--card);border:1px solid var(--line);width:100%;margin-bottom:6px}
th,td{padding:6px 9px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
th{background:#eef1f6;font-size:12px;color:#4a5368;font-weight:600}
td.num,th.num{text-align:right}
.time{white-space:nowrap}
td .err{color:var(--bad)}
.muted{color:var(--muted)}
form.filters{display:flex;gap:10px;flex-wrap:wrap;align-items:flex-end;background:var(--card);border:1px solid var(--line);border-radius:8px;padding:10px 12px;margin-bottom:12px}
form.filters label{display:flex;flex-direction:column;font-size:12px;color:var(--muted);gap:3px}
input,select{font:inherit;padding:5px 7px;border:1px solid #c3c9d5;border-radius:5px;background:#fff}
button{font:inherit;padding:6px 12px;border-radius:6px;border:1px solid var(--accent);background:var(--accent);color:#fff;cursor:pointer}
button.secondary{background:#fff;color:var(--accent)}
button.danger{background:var(--bad);border-color:var(--bad)}
form.inline{display:inline}
.actions{display:flex;gap:10px;margin:10px 0}
dl.kv{display:grid;grid-template-columns:190px 1fr;gap:4px 14px;background:var(--card);border:1px solid var(--line);border-radius:8px;padding:12px 16px}
dl.kv dt{color:var(--muted)}dl.kv dd{margin:0;word-break:break-word}
pre{background:#0f1522;color:#dfe6f3;padding:12px 14px;border-radius:8px;overflow:auto;max-height:420px;font-size:12px}
.notice{background:#fff8e6;border:1px solid #f0d28a;border-radius:8px;padding:10px 14px;margin:10px 0}
.notice.bad{background:#fdeeee;border-color:#eba3a3}
.notice.ok{background:#e9f7ef;border-color:#9fd6b5}
.hook{border:1px dashed #b4bccb;border-radius:8px;padding:10px 14px;color:var(--muted);background:#fbfcfd}
code{font-size:12px;background:#eef1f6;padding:1px 4px;border-radius:4px}
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            esc("<script>alert('x')</script>&\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;"
        );
        assert_eq!(query_value("a b&c"), "a+b%26c");
    }
}
