//! Output of `dlq list`: the dead letters as an aligned table for a terminal, or as one
//! JSON array for scripts. Pure formatting; reading the topic lives in `dlq`.

use super::dlq::DeadLetter;
use super::OperatorError;
use crate::clock::format_time_ms;

/// Longest error shown in the table, in characters.
const TABLE_ERROR_CHARS: usize = 80;

/// The `dlq list` table: one header line and one line per dead letter.
pub fn format_table(letters: &[DeadLetter]) -> String {
    let dash = || "-".to_string();
    let rows: Vec<[String; 7]> = letters
        .iter()
        .map(|d| {
            [
                d.position(),
                d.event_id.clone().unwrap_or_else(dash),
                d.route.clone().unwrap_or_else(dash),
                d.class.clone().unwrap_or_else(dash),
                d.attempts.map_or_else(dash, |a| a.to_string()),
                d.first_failure_at_ms.map_or_else(dash, format_time_ms),
                d.error.as_deref().map_or_else(dash, one_line_error),
            ]
        })
        .collect();
    let header = [
        "P/OFFSET",
        "EVENT ID",
        "ROUTE",
        "CLASS",
        "ATTEMPTS",
        "FIRST FAILURE",
        "ERROR",
    ];
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row.iter()) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len() - 1;
        let mut out = String::new();
        for (i, cell) in cells.into_iter().enumerate() {
            if i == last {
                out.push_str(cell);
            } else {
                let pad = widths[i] - cell.chars().count();
                out.push_str(cell);
                out.push_str(&" ".repeat(pad + 2));
            }
        }
        out.truncate(out.trim_end().len());
        out.push('\n');
        out
    };
    let mut out = line(header.to_vec());
    for row in &rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// The error on one line, cut to [`TABLE_ERROR_CHARS`] with `...` when longer.
fn one_line_error(e: &str) -> String {
    let flat: String = e
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if flat.chars().count() <= TABLE_ERROR_CHARS {
        return flat;
    }
    let cut: String = flat.chars().take(TABLE_ERROR_CHARS - 3).collect();
    format!("{cut}...")
}

/// The dead letters as one JSON array (for `dlq list --json`).
pub fn to_json(letters: &[DeadLetter]) -> Result<String, OperatorError> {
    Ok(serde_json::to_string_pretty(letters)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::dlq::tests::msg;

    #[test]
    fn table_aligns_and_truncates_errors() {
        let long = format!("line one\nline two {}", "x".repeat(200));
        let letters = vec![
            DeadLetter {
                topic_partition: 0,
                offset: 5,
                key: Some("k".into()),
                event_id: Some("evt-long-id-1".into()),
                route: Some("guest-sync".into()),
                class: Some("permanent".into()),
                attempts: Some(0),
                first_failure_at_ms: Some(0),
                error: Some(long),
                original_topic: None,
                original_partition: None,
                original_offset: None,
                value_len: 1,
            },
            DeadLetter::from_message(&msg(None, None, None)),
        ];
        let table = format_table(&letters);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(
            lines[0].starts_with("P/OFFSET  EVENT ID       ROUTE"),
            "{table}"
        );
        assert!(lines[1].contains("1970-01-01T00:00:00.000Z"));
        assert!(lines[1].contains("line one line two xxx"));
        let error = lines[1].split("000Z  ").nth(1).unwrap();
        assert_eq!(error.chars().count(), 80);
        assert!(error.ends_with("..."));
        assert!(
            lines[2].starts_with("2/17      -              -"),
            "{table}"
        );
        let col = lines[0].find("ERROR").unwrap();
        assert_eq!(&lines[2][col..], "-");
    }

    #[test]
    fn json_is_one_array() {
        let letters = vec![DeadLetter::from_message(&msg(None, Some(b"k"), Some(b"v")))];
        let v: serde_json::Value = serde_json::from_str(&to_json(&letters).unwrap()).unwrap();
        assert_eq!(v[0]["topic_partition"], 2);
        assert_eq!(v[0]["key"], "k");
        assert_eq!(v[0]["event_id"], serde_json::Value::Null);
        assert_eq!(to_json(&[]).unwrap(), "[]");
    }
}
