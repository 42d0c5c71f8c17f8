//! Cutting a server's output into console lines, as both the shim and a worker that runs the
//! server directly do: at newlines, and at [`MAX_LINE_BYTES`] for output without them.

/// Longest console line kept whole; longer output is split into lines of this size, so a
/// server printing without newlines cannot grow the memory of whoever reads it.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// Takes what `buf` holds of the current line into `line`. Returns whether the line is now
/// complete (a newline, or [`MAX_LINE_BYTES`] reached) and how many bytes of `buf` were used.
pub fn take_line(line: &mut Vec<u8>, buf: &[u8]) -> (bool, usize) {
    let room = MAX_LINE_BYTES - line.len();
    match buf.iter().take(room).position(|b| *b == b'\n') {
        Some(newline) => {
            line.extend_from_slice(&buf[..newline]);
            (true, newline + 1)
        }
        None => {
            let take = buf.len().min(room);
            line.extend_from_slice(&buf[..take]);
            (line.len() == MAX_LINE_BYTES, take)
        }
    }
}

/// A line's text: without a trailing `\r`, invalid UTF-8 replaced.
pub fn line_text(bytes: &[u8]) -> String {
    let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
    String::from_utf8_lossy(bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_end_at_newlines_or_at_the_cap() {
        let mut line = Vec::new();
        assert_eq!(take_line(&mut line, b"ab"), (false, 2), "no newline yet");
        assert_eq!(
            take_line(&mut line, b"c\r\nde"),
            (true, 3),
            "up to the newline"
        );
        assert_eq!(line_text(&line), "abc");
        line.clear();
        let long = vec![b'x'; MAX_LINE_BYTES + 10];
        assert_eq!(take_line(&mut line, &long), (true, MAX_LINE_BYTES));
        assert_eq!(line_text(b"\xffok"), "\u{fffd}ok");
    }
}
