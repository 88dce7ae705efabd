//! The event id of a Genesys notification, the same whichever path delivered it
//! (EventBridge `detail`, a trigger's Data Action, the Notifications WebSocket):
//! SHA-256 over the topic name followed by the RFC 8785 (JSON Canonicalization Scheme)
//! form of `eventBody`, hex.
//!
//! Invariant: two bodies that are the same JSON value (other key order, other whitespace,
//! `1.0` vs `1`, `\u00e9` vs `é`) give the same id; the canonical form is built once per
//! event over the already-parsed body only, never over the whole delivery.
//!
//! RFC 8785: object members sorted by the UTF-16 code units of their names (section
//! 3.2.3); strings as ECMAScript `JSON.stringify` writes them (section 3.2.2.2); numbers as
//! ECMAScript `Number.prototype.toString` writes the IEEE 754 double (section 3.2.2.3), so
//! an integer beyond 2^53 is rounded like any JSON number read by JavaScript.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// The id of a notification on `topic` with body `event_body`.
pub fn notification_id(topic: &str, event_body: &Value) -> String {
    let mut h = Sha256::new();
    h.update(topic.as_bytes());
    let mut canonical = Vec::with_capacity(256);
    write_canonical(event_body, &mut canonical);
    h.update(&canonical);
    hex::encode(h.finalize())
}

/// The RFC 8785 canonical text of `value`.
pub fn canonical_json(value: &Value) -> String {
    let mut out = Vec::new();
    write_canonical(value, &mut out);
    // Only UTF-8 text (from `str`s and ASCII) is ever written.
    String::from_utf8(out).unwrap_or_default()
}

fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => write_number(n.as_f64().unwrap_or(0.0), out),
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            // UTF-16 code unit order differs from UTF-8 byte order only where a name holds a
            // character at or above U+E000 (lead byte 0xEE or higher): those go the slow way.
            if members.iter().any(|(k, _)| k.bytes().any(|b| b >= 0xEE)) {
                members.sort_by(|(a, _), (b, _)| a.encode_utf16().cmp(b.encode_utf16()));
            } else {
                members.sort_unstable_by(|(a, _), (b, _)| a.as_bytes().cmp(b.as_bytes()));
            }
            out.push(b'{');
            for (i, (k, v)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(k, out);
                out.push(b':');
                write_canonical(v, out);
            }
            out.push(b'}');
        }
    }
}

/// `JSON.stringify` of a string: `"` and `\` escaped, the short escapes for control
/// characters that have one, `\u00xx` (lower-case hex) for the rest; all else as is.
/// Runs of bytes that need no escape are copied whole (every byte of a multi-byte UTF-8
/// character is 0x80 or above, so none of them is ever escaped).
fn write_string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut run = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            0x0c => b"\\f",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[run..i]);
        run = i + 1;
        if escape.is_empty() {
            out.extend_from_slice(format!("\\u{b:04x}").as_bytes());
        } else {
            out.extend_from_slice(escape);
        }
    }
    out.extend_from_slice(&bytes[run..]);
    out.push(b'"');
}

/// ECMAScript `Number.prototype.toString` (ECMA-262, Number::toString) of a finite
/// double: the shortest digits that round-trip, placed per the exponent.
fn write_number(f: f64, out: &mut Vec<u8>) {
    if f == 0.0 || !f.is_finite() {
        // -0 prints as 0; JSON has no NaN or infinity.
        out.push(b'0');
        return;
    }
    if f < 0.0 {
        out.push(b'-');
    }
    // Rust's `{:e}` gives the shortest round-trip digits: `d[.ddd]e<exp>`.
    let sci = format!("{:e}", f.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let k = digits.len() as i32;
    // The decimal point sits after `n` digits: value = 0.digits * 10^n.
    let n = exp.parse::<i32>().unwrap_or(0) + 1;
    let text = if k <= n && n <= 21 {
        format!("{digits}{}", "0".repeat((n - k) as usize))
    } else if 0 < n && n <= 21 {
        format!("{}.{}", &digits[..n as usize], &digits[n as usize..])
    } else if -6 < n && n <= 0 {
        format!("0.{}{digits}", "0".repeat((-n) as usize))
    } else {
        let e = n - 1;
        let sign = if e < 0 { '-' } else { '+' };
        if k == 1 {
            format!("{digits}e{sign}{}", e.abs())
        } else {
            format!("{}.{}e{sign}{}", &digits[..1], &digits[1..], e.abs())
        }
    };
    out.extend_from_slice(text.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(text: &str) -> String {
        canonical_json(&serde_json::from_str(text).unwrap())
    }

    #[test]
    fn key_order_and_whitespace_do_not_matter() {
        let a = canon(r#"{"b":1,"a":{"y":[1,2],"x":"s"}}"#);
        let b = canon("{ \"a\" : { \"x\" : \"s\", \"y\" : [ 1 , 2 ] } ,\n\t\"b\" : 1 }");
        assert_eq!(a, b);
        assert_eq!(a, r#"{"a":{"x":"s","y":[1,2]},"b":1}"#);
    }

    #[test]
    fn numbers_follow_ecmascript() {
        assert_eq!(canon("[1.0, 1, 1e0, 10E-1]"), "[1,1,1,1]");
        assert_eq!(canon("[-0, 0.0, -0.0]"), "[0,0,0]");
        assert_eq!(
            canon("[1795595400123, 42.5, -3.25]"),
            "[1795595400123,42.5,-3.25]"
        );
        // RFC 8785 appendix B samples.
        assert_eq!(canon("1e21"), "1e+21");
        assert_eq!(canon("1e20"), "100000000000000000000");
        assert_eq!(canon("0.000001"), "0.000001");
        assert_eq!(canon("0.0000001"), "1e-7");
        assert_eq!(canon("1.7976931348623157e308"), "1.7976931348623157e+308");
        assert_eq!(canon("5e-324"), "5e-324");
        assert_eq!(canon("333333333.3333333"), "333333333.3333333");
        assert_eq!(canon("9007199254740993"), "9007199254740992");
        assert_eq!(canon("0.1"), "0.1");
        assert_eq!(canon("123456789012345680000"), "123456789012345680000");
    }

    #[test]
    fn strings_escape_as_json_stringify() {
        assert_eq!(canon(r#""\u00e9\u20ac""#), "\"é€\"");
        assert_eq!(canon(r#""é€""#), "\"é€\"");
        assert_eq!(canon(r#""\/""#), "\"/\"");
        assert_eq!(canon(r#""\u0001\u001f\n\"\\""#), r#""\u0001\u001f\n\"\\""#);
        assert_eq!(canon(r#""\ud83d\ude00""#), "\"😀\"");
    }

    #[test]
    fn every_character_class_escapes_as_serde_json_writes_it() {
        // serde_json writes strings as JSON.stringify does (short escapes, \u00xx in
        // lower-case hex for other controls, everything else as is), so it is the oracle.
        let mut texts: Vec<String> = (0u32..0x80)
            .map(|c| format!("a{}b", char::from_u32(c).unwrap()))
            .collect();
        texts.push("plain".into());
        texts.push(String::new());
        texts.push("\"\\\u{0}\u{1f}\u{7f}é€😀\u{e000}\n".into());
        texts.push("x".repeat(300) + "\"" + &"y".repeat(300));
        for t in texts {
            let mut out = Vec::new();
            write_string(&t, &mut out);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                serde_json::to_string(&t).unwrap()
            );
        }
    }

    #[test]
    fn members_of_plain_names_sort_like_their_bytes() {
        assert_eq!(
            canon(r#"{"b":1,"a":{"z":1,"Z":2,"_":3},"ab":2,"":0}"#),
            r#"{"":0,"a":{"Z":2,"_":3,"z":1},"ab":2,"b":1}"#
        );
    }

    #[test]
    fn members_sort_by_utf16_code_units() {
        // U+E000 is above U+1F600 in UTF-8 bytes order but below it in UTF-16 (surrogates
        // start at 0xD800).
        assert_eq!(
            canon("{\"\u{e000}\":1,\"\u{1f600}\":2}"),
            "{\"\u{1f600}\":2,\"\u{e000}\":1}"
        );
    }

    #[test]
    fn same_notification_same_id() {
        let topic = "v2.detail.events.conversation.c1.attributes";
        let a: Value = serde_json::from_str(
            r#"{"conversationId":"c1","attributes":{"k":"v"},"eventTime":1.0}"#,
        )
        .unwrap();
        let b: Value = serde_json::from_str(
            "{\"eventTime\": 1, \"attributes\": {\"k\": \"\\u0076\"},\n \"conversationId\": \"c1\"}",
        )
        .unwrap();
        assert_eq!(notification_id(topic, &a), notification_id(topic, &b));
        assert_ne!(
            notification_id(topic, &a),
            notification_id("v2.detail.events.conversation.c2.attributes", &a)
        );
    }
}
