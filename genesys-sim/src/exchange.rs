//! The request and reply values the simulators work with.
//!
//! Both simulators route by hand on one catch-all warp filter instead of composing
//! warp filters per route: that keeps fault injection and per-route statistics in one
//! place (every request passes through the same pipeline) and keeps compile times low.

use bytes::Bytes;
use serde_json::{json, Value};
use warp::http::{HeaderMap, Method, StatusCode};

pub(crate) use super::faults::Delivery;
pub(crate) use super::server::ResetConnection;

/// One HTTP request as the simulators see it.
#[derive(Debug)]
pub(crate) struct SimRequest {
    pub method: Method,
    /// The raw path, as sent (still percent-encoded).
    pub path: String,
    /// Path segments, percent-decoded; a single trailing slash is ignored.
    pub segments: Vec<String>,
    /// The raw query string without the `?` (empty when there is none).
    pub query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl SimRequest {
    pub fn new(method: Method, path: &str, query: String, headers: HeaderMap, body: Bytes) -> Self {
        let trimmed = path.strip_prefix('/').unwrap_or(path);
        let trimmed = trimmed.strip_suffix('/').unwrap_or(trimmed);
        let segments = if trimmed.is_empty() {
            Vec::new()
        } else {
            trimmed
                .split('/')
                .map(|s| percent_decode(s, false))
                .collect()
        };
        SimRequest {
            method,
            path: path.to_string(),
            segments,
            query,
            headers,
            body,
        }
    }

    /// The segments as `&str`, for slice patterns in the routers.
    pub fn segs(&self) -> Vec<&str> {
        self.segments.iter().map(String::as_str).collect()
    }

    /// A header's value when it is present and valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The first value of a query parameter, decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        form_pairs(&self.query)
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }

    /// The body as JSON, or a 400 reply saying why it is not.
    pub fn json_body(&self) -> Result<Value, Reply> {
        serde_json::from_slice(&self.body)
            .map_err(|e| Reply::bad_request(&format!("body is not valid JSON: {e}")))
    }
}

/// A JSON reply. Cloneable so the CMS can replay the first answer to an idempotency key.
#[derive(Clone, Debug)]
pub(crate) struct Reply {
    pub status: StatusCode,
    pub body: Value,
    pub headers: Vec<(&'static str, String)>,
    /// Whether the client gets it at all (an apply-then-fail fault says otherwise).
    pub delivery: Delivery,
}

impl Reply {
    pub fn json(status: StatusCode, body: Value) -> Self {
        Reply {
            status,
            body,
            headers: Vec::new(),
            delivery: Delivery::Normal,
        }
    }

    pub fn with_delivery(mut self, delivery: Delivery) -> Self {
        self.delivery = delivery;
        self
    }

    pub fn ok(body: Value) -> Self {
        Self::json(StatusCode::OK, body)
    }

    pub fn with_header(mut self, name: &'static str, value: String) -> Self {
        self.headers.push((name, value));
        self
    }

    /// Genesys-style error body (`status`, `code`, `message`); the CMS uses its own shapes.
    pub fn genesys_error(status: StatusCode, code: &str, message: &str) -> Self {
        Self::json(
            status,
            json!({"status": status.as_u16(), "code": code, "message": message}),
        )
    }

    pub fn bad_request(message: &str) -> Self {
        Self::genesys_error(StatusCode::BAD_REQUEST, "bad.request", message)
    }

    pub fn not_found(message: &str) -> Self {
        Self::genesys_error(StatusCode::NOT_FOUND, "not.found", message)
    }

    pub fn method_not_allowed() -> Self {
        Self::genesys_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method.not.allowed",
            "this route does not accept that method",
        )
    }

    pub fn into_response(self) -> warp::reply::Response {
        // Serialising a `Value` cannot fail (its map keys are strings); fall back anyway
        // rather than panic.
        let body = serde_json::to_vec(&self.body).unwrap_or_default();
        let mut response = warp::reply::Response::new(body.into());
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(
            warp::http::header::CONTENT_TYPE,
            warp::http::HeaderValue::from_static("application/json"),
        );
        for (name, value) in self.headers {
            if let Ok(value) = warp::http::HeaderValue::from_str(&value) {
                headers.insert(name, value);
            }
        }
        if self.delivery == Delivery::Reset {
            // The accept loop sees the marker and resets the connection instead.
            response.extensions_mut().insert(ResetConnection);
        }
        response
    }
}

/// Splits `a=1&b=two` (a query string or an `application/x-www-form-urlencoded` body)
/// into decoded pairs. Malformed escapes are kept literally instead of rejected, as
/// lenient servers do.
pub(crate) fn form_pairs(raw: &str) -> Vec<(String, String)> {
    raw.split('&')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            (percent_decode(k, true), percent_decode(v, true))
        })
        .collect()
}

/// Decodes `%XX` escapes (and `+` as a space in form encoding); invalid UTF-8 becomes U+FFFD.
fn percent_decode(s: &str, plus_is_space: bool) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = match bytes.get(i..i + 3) {
            Some([b'%', hi, lo]) => hex_value(*hi).zip(hex_value(*lo)),
            _ => None,
        };
        match (escaped, bytes[i]) {
            (Some((hi, lo)), _) => {
                out.push(hi << 4 | lo);
                i += 3;
            }
            (None, b'+') if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            (None, b) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_escapes_and_keeps_malformed_ones() {
        assert_eq!(percent_decode("a%20b%2Fc", false), "a b/c");
        assert_eq!(percent_decode("a+b", true), "a b");
        assert_eq!(percent_decode("a+b", false), "a+b");
        assert_eq!(percent_decode("100%", false), "100%");
        assert_eq!(percent_decode("%zz%4", false), "%zz%4");
    }

    #[test]
    fn splits_form_pairs() {
        let pairs = form_pairs("grant_type=client_credentials&x=&y&&z=a%3Db");
        assert_eq!(
            pairs,
            vec![
                ("grant_type".into(), "client_credentials".into()),
                ("x".into(), String::new()),
                ("y".into(), String::new()),
                ("z".into(), "a=b".into()),
            ]
        );
    }
}
