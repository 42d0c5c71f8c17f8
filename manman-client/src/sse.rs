//! A small Server-Sent Events parser for the client side.

/// One event of an SSE stream.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    /// `event:` (default `message`).
    pub event: String,
    /// `id:`, if any.
    pub id: Option<String>,
    /// The `data:` lines joined with newlines.
    pub data: String,
}

/// Splits a byte stream into events.
#[derive(Debug, Default)]
pub struct SseParser {
    buffer: String,
    pending: Vec<u8>,
}

impl SseParser {
    /// Adds received bytes.
    pub fn push(&mut self, chunk: &[u8]) {
        self.pending.extend_from_slice(chunk);
        // Keep an incomplete UTF-8 sequence for the next chunk.
        let valid = match std::str::from_utf8(&self.pending) {
            Ok(s) => s.len(),
            Err(e) => e.valid_up_to(),
        };
        let text = String::from_utf8_lossy(&self.pending[..valid]).replace("\r\n", "\n");
        self.buffer.push_str(&text);
        self.pending.drain(..valid);
    }

    /// The next complete event, if one was received. Comments and empty events are skipped.
    pub fn next_event(&mut self) -> Option<SseEvent> {
        loop {
            let end = self.buffer.find("\n\n")?;
            let block: String = self.buffer.drain(..end + 2).collect();
            let mut event = SseEvent {
                event: "message".to_owned(),
                ..SseEvent::default()
            };
            let mut data = Vec::new();
            for line in block.lines() {
                let (field, value) = line.split_once(':').unwrap_or((line, ""));
                let value = value.strip_prefix(' ').unwrap_or(value);
                match field {
                    "event" => value.clone_into(&mut event.event),
                    "id" => event.id = Some(value.to_owned()),
                    "data" => data.push(value),
                    _ => {}
                }
            }
            if !data.is_empty() {
                event.data = data.join("\n");
                return Some(event);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_events_split_across_chunks() {
        let mut p = SseParser::default();
        p.push(b": keep-alive\n\nevent: line\nid: 7\nda");
        assert_eq!(p.next_event(), None);
        p.push(b"ta: {\"a\":1}\n\n");
        let e = p.next_event().unwrap();
        assert_eq!(e.event, "line");
        assert_eq!(e.id.as_deref(), Some("7"));
        assert_eq!(e.data, "{\"a\":1}");
        assert_eq!(p.next_event(), None);
    }

    #[test]
    fn keeps_split_utf8() {
        let mut p = SseParser::default();
        let bytes = "data: é\n\n".as_bytes();
        p.push(&bytes[..7]);
        p.push(&bytes[7..]);
        assert_eq!(p.next_event().unwrap().data, "é");
    }
}
