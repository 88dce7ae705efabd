//! Text helpers every layer shares. Invariant: a cut never splits a character, so what
//! is cut (a header, an error message) stays valid UTF-8.

/// `text` cut to at most `max` bytes on a character boundary.
pub(crate) fn truncate_utf8(text: &str, max: usize) -> &str {
    &text[..text.floor_char_boundary(max)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_keeps_utf8_valid() {
        let s = "é".repeat(600);
        let t = truncate_utf8(&s, 1024);
        assert!(t.len() <= 1024);
        assert_eq!(t.len() % 2, 0);
        assert_eq!(truncate_utf8("short", 10), "short");
        assert_eq!(truncate_utf8("é", 1), "");
    }
}
