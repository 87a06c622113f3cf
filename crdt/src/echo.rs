//! How error messages quote what a user wrote: whole when it is short, else cut to its first
//! [`ECHO_CHARS`] characters with its length, so a 1 MB value never makes a 1 MB error.

/// How many characters of a value an error message quotes.
pub const ECHO_CHARS: usize = 64;

/// `value` quoted for an error message: `"web"`, or `"aaaa…" (1048576 bytes)` when it is
/// longer than [`ECHO_CHARS`] characters.
pub fn echo(value: &str) -> String {
    match cut(value, ECHO_CHARS) {
        None => format!("{value:?}"),
        Some(head) => format!("{head:?}… ({} bytes)", value.len()),
    }
}

/// `value` unquoted, cut like [`echo`] (for a field path that holds a user's key).
pub fn clip(value: &str) -> String {
    clip_to(value, ECHO_CHARS)
}

/// `text` cut to its first `max` characters with its length, if it is longer.
pub fn clip_to(text: &str, max: usize) -> String {
    match cut(text, max) {
        None => text.to_string(),
        Some(head) => format!("{head}… ({} bytes)", text.len()),
    }
}

/// The first `max` characters of `text`, if it has more.
fn cut(text: &str, max: usize) -> Option<&str> {
    text.char_indices().nth(max).map(|(at, _)| &text[..at])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_values_are_quoted_whole() {
        assert_eq!(echo("web"), "\"web\"");
        assert_eq!(clip("web"), "web");
        assert_eq!(
            echo(&"a".repeat(ECHO_CHARS)),
            format!("{:?}", "a".repeat(64))
        );
    }

    #[test]
    fn long_values_are_cut_with_their_length() {
        let long = "x".repeat(1 << 20);
        let quoted = echo(&long);
        assert_eq!(quoted, format!("\"{}\"… (1048576 bytes)", "x".repeat(64)));
        assert!(clip(&long).len() < 100);
    }

    #[test]
    fn cuts_fall_between_characters() {
        let long = "é".repeat(100); // two bytes each
        assert_eq!(clip(&long), format!("{}… (200 bytes)", "é".repeat(64)));
    }
}
