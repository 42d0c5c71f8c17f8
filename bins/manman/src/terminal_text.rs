//! [`escape_controls`]: text from a game server made safe to print on an operator's terminal.
//! A console line could otherwise carry escape sequences that retitle the terminal, clear it,
//! move the cursor over earlier lines or worse.

use std::borrow::Cow;
use std::fmt::Write;

/// `text` with every control character shown escaped: ESC as `\x1b`, the other C0 controls
/// (but tab) and DEL as `\xNN`, the C1 controls (U+0080 to U+009F) as `\u{NN}`. Everything else,
/// including tabs and any other Unicode, is unchanged.
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if !needs_escape(c) {
            out.push(c);
        } else if u32::from(c) < 0x80 {
            let _ = write!(out, "\\x{:02x}", u32::from(c));
        } else {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        }
    }
    Cow::Owned(out)
}

/// C0 controls but tab, DEL, and C1 controls.
fn needs_escape(c: char) -> bool {
    c != '\t' && c.is_control()
}

#[cfg(test)]
mod tests {
    use super::escape_controls;

    #[test]
    fn control_characters_are_shown_escaped_and_the_rest_unchanged() {
        assert_eq!(
            escape_controls("\u{1b}]0;pwned\u{7}\u{1b}[2J"),
            "\\x1b]0;pwned\\x07\\x1b[2J"
        );
        assert_eq!(escape_controls("a\rb\u{7f}c\0"), "a\\x0db\\x7fc\\x00");
        assert_eq!(escape_controls("\u{9b}31m\u{85}"), "\\u{9b}31m\\u{85}");
        let plain = "Server is ready\tplayers: 3/16 — héllo 👾 \\x1b";
        assert!(matches!(
            escape_controls(plain),
            std::borrow::Cow::Borrowed(same) if same == plain
        ));
    }
}
