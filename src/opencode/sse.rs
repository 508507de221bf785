//! An incremental parser for the `text/event-stream` that `opencode serve` sends on
//! `GET /global/event` (and `GET /event`): `data: {json}` lines, each event ended by a blank
//! line (facts/opencode.md §4.4).
//!
//! Owns turning arbitrary byte chunks into complete event payloads: a line may be split across
//! chunks (only the unfinished line is kept between them), lines end in `\n`, `\r\n` or `\r`,
//! several `data:` lines of one event are joined with `\n`, comments (`:`) and the other
//! fields (`event:`, `id:`, `retry:`) are skipped. An event larger than the bound is dropped
//! whole and counted, never buffered without limit. Pure; no I/O.

/// Largest event accepted (bytes of `data`); larger ones are skipped whole.
pub const MAX_EVENT_BYTES: usize = 8 * 1024 * 1024;

/// The parser's state between chunks.
#[derive(Debug)]
pub struct SseParser {
    /// The unfinished line.
    line: Vec<u8>,
    /// The current event's `data` so far.
    data: String,
    has_data: bool,
    /// The current line (or event) went over the bound: skip to the end of the event.
    skipping: bool,
    /// The current line itself went over the bound (it is not a blank line when it ends).
    line_over: bool,
    /// The previous chunk ended with `\r`: a `\n` starting the next one belongs to it.
    after_cr: bool,
    max: usize,
    /// Events dropped because they were too large or not UTF-8.
    pub dropped: u64,
}

impl Default for SseParser {
    fn default() -> Self {
        Self::new(MAX_EVENT_BYTES)
    }
}

impl SseParser {
    /// A parser that drops events whose data exceeds `max` bytes.
    pub fn new(max: usize) -> Self {
        Self {
            line: Vec::new(),
            data: String::new(),
            has_data: false,
            skipping: false,
            line_over: false,
            after_cr: false,
            max: max.max(1),
            dropped: 0,
        }
    }

    /// Feeds one chunk; returns the `data` of every event it completed, in order.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        let mut rest = chunk;
        if self.after_cr {
            self.after_cr = false;
            if let Some(r) = rest.strip_prefix(b"\n") {
                rest = r;
            }
        }
        while let Some(i) = rest.iter().position(|b| *b == b'\n' || *b == b'\r') {
            let (head, tail) = rest.split_at(i);
            self.extend_line(head);
            let crlf = tail.starts_with(b"\r\n");
            rest = &tail[if crlf { 2 } else { 1 }..];
            if tail == b"\r" {
                // A `\r` at the very end: a `\n` may follow in the next chunk.
                self.after_cr = true;
            }
            self.end_line(&mut out);
        }
        self.extend_line(rest);
        out
    }

    fn extend_line(&mut self, bytes: &[u8]) {
        if self.skipping {
            // Only whether the line is blank matters now.
            self.line_over |= !bytes.is_empty();
            return;
        }
        if self.line.len() + bytes.len() + self.data.len() > self.max {
            self.line_over = true;
            self.skip();
            return;
        }
        self.line.extend_from_slice(bytes);
    }

    fn skip(&mut self) {
        if !self.skipping {
            self.dropped += 1;
        }
        self.skipping = true;
        self.line.clear();
        self.data.clear();
        self.has_data = false;
    }

    fn end_line(&mut self, out: &mut Vec<String>) {
        let line = std::mem::take(&mut self.line);
        if std::mem::take(&mut self.line_over) {
            return;
        }
        if line.is_empty() {
            // End of an event.
            if self.has_data && !self.skipping && !self.data.is_empty() {
                out.push(std::mem::take(&mut self.data));
            }
            self.data.clear();
            self.has_data = false;
            self.skipping = false;
            return;
        }
        if self.skipping || line.starts_with(b":") {
            return;
        }
        let (field, value) = match line.iter().position(|b| *b == b':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (&line[..], &[][..]),
        };
        if field != b"data" {
            return;
        }
        let Ok(text) = std::str::from_utf8(value) else {
            self.skip();
            return;
        };
        if self.has_data {
            self.data.push('\n');
        }
        self.data.push_str(text);
        self.has_data = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(p: &mut SseParser, chunks: &[&[u8]]) -> Vec<String> {
        chunks.iter().flat_map(|c| p.push(c)).collect()
    }

    #[test]
    fn events_split_anywhere_come_out_whole() {
        let text = b"data: {\"type\":\"server.connected\"}\n\ndata: {\"a\":1}\n\n";
        let whole = SseParser::default().push(text);
        assert_eq!(whole, vec!["{\"type\":\"server.connected\"}", "{\"a\":1}"]);
        for cut in 0..text.len() {
            let mut p = SseParser::default();
            let got = all(&mut p, &[&text[..cut], &text[cut..]]);
            assert_eq!(got, whole, "cut at {cut}");
        }
        let mut p = SseParser::default();
        let bytes: Vec<&[u8]> = text.chunks(1).collect();
        assert_eq!(all(&mut p, &bytes), whole);
    }

    #[test]
    fn line_endings_comments_and_other_fields() {
        let mut p = SseParser::default();
        let got = p.push(b": hi\r\nevent: x\r\nid: 7\r\ndata:a\r\ndata: b\r\n\r\nretry: 5\n\n");
        assert_eq!(got, vec!["a\nb"]);
        // `\r` alone ends lines too, also when the `\n` of a `\r\n` comes in the next chunk.
        assert_eq!(p.push(b"data: c\r\r"), vec!["c"]);
        assert_eq!(p.push(b"data: d\r"), Vec::<String>::new());
        assert_eq!(p.push(b"\n\r\n"), vec!["d"]);
        // Blank lines without data, and an empty `data`, dispatch nothing.
        assert_eq!(p.push(b"\n\ndata\n\n"), Vec::<String>::new());
    }

    #[test]
    fn oversized_events_are_dropped_whole() {
        let mut p = SseParser::new(16);
        let big = format!("data: {}\n", "x".repeat(40));
        let got = all(
            &mut p,
            &[big.as_bytes(), b"data: more\n\n", b"data: ok\n\n"],
        );
        assert_eq!(got, vec!["ok"]);
        assert_eq!(p.dropped, 1);
        // Two data lines that only together exceed the bound.
        let mut p = SseParser::new(16);
        let got = p.push(b"data: 0123456789\ndata: 0123456789\n\ndata: y\n\n");
        assert_eq!(got, vec!["y"]);
        assert_eq!(p.dropped, 1);
    }

    #[test]
    fn invalid_utf8_drops_the_event() {
        let mut p = SseParser::default();
        let got = p.push(b"data: \xff\xfe\n\ndata: fine\n\n");
        assert_eq!(got, vec!["fine"]);
        assert_eq!(p.dropped, 1);
    }
}
