//! Incremental scanner for `text/event-stream` bodies.
//!
//! Owns extracting usage, cost and in-band errors from an SSE stream fed chunk by chunk, however
//! the chunks split lines, while keeping only the unfinished line between chunks. It never holds
//! the stream: the caller forwards each chunk unchanged.
//!
//! Line rules: a line ends at `\n` (a trailing `\r` is dropped). A `data:` line (one optional
//! space after the colon) is an event; `data: [DONE]` marks the end. Each `data:` line is read on
//! its own (Venice sends one JSON object per line, so multi-line events are not joined). Only
//! payloads containing `"usage"`, `"cost"` or `"error"` are parsed, with [`usage::parse_json`].
//! Comments (`:`), `event:`, `id:`, `retry:` and blank lines are ignored. A line longer than
//! [`MAX_LINE_BYTES`] (counting the bytes before `\n`) is dropped wherever the chunks split it.

use crate::gateway::usage::{self, BodyReport};

/// Longest single SSE line kept while waiting for its end; longer lines are skipped (counted).
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// Capacity of the line buffer kept for reuse; a larger buffer is freed after its line.
const KEEP_CAPACITY: usize = 64 * 1024;

/// Keys whose presence makes a payload worth parsing.
const NEEDLES: [&[u8]; 3] = [b"\"usage\"", b"\"cost\"", b"\"error\""];

/// Feeds on SSE bytes; call [`SseScanner::feed`] per chunk, [`SseScanner::finish`] at the end.
#[derive(Debug, Default)]
pub struct SseScanner {
    partial: Vec<u8>,
    report: BodyReport,
    saw_done: bool,
    events: u64,
    oversized_lines: u64,
    /// Inside an oversized line: drop bytes until the next `\n`.
    skipping: bool,
}

impl SseScanner {
    pub fn new() -> Self {
        Self::default()
    }

    /// Scans one chunk. Only `data:` lines that may carry `usage`, `cost` or `error` are parsed.
    pub fn feed(&mut self, chunk: &[u8]) {
        let mut rest = chunk;
        while !rest.is_empty() {
            let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
                self.hold(rest);
                return;
            };
            let (line, tail) = (&rest[..nl], &rest[nl + 1..]);
            rest = tail;
            if std::mem::take(&mut self.skipping) {
                continue;
            }
            if self.partial.is_empty() {
                if line.len() > MAX_LINE_BYTES {
                    self.oversized_lines += 1;
                } else {
                    self.scan_line(line);
                }
            } else if self.partial.len() + line.len() > MAX_LINE_BYTES {
                self.oversized_lines += 1;
                self.drop_partial();
            } else {
                let mut partial = std::mem::take(&mut self.partial);
                partial.extend_from_slice(line);
                self.scan_line(&partial);
                partial.clear();
                if partial.capacity() <= KEEP_CAPACITY {
                    self.partial = partial;
                }
            }
        }
    }

    /// Ends the stream: a final line without a newline is scanned too.
    pub fn finish(&mut self) {
        self.skipping = false;
        let partial = std::mem::take(&mut self.partial);
        if !partial.is_empty() {
            self.scan_line(&partial);
        }
    }

    /// Keeps the start of an unfinished line, or drops it once it is too long.
    fn hold(&mut self, bytes: &[u8]) {
        if self.skipping {
            return;
        }
        if self.partial.len() + bytes.len() > MAX_LINE_BYTES {
            self.oversized_lines += 1;
            self.drop_partial();
            self.skipping = true;
        } else {
            self.partial.extend_from_slice(bytes);
        }
    }

    fn drop_partial(&mut self) {
        self.partial = Vec::new();
    }

    /// Scans one complete line (without its `\n`).
    fn scan_line(&mut self, line: &[u8]) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(payload) = line.strip_prefix(b"data:") else {
            return;
        };
        let payload = payload.strip_prefix(b" ").unwrap_or(payload);
        self.events += 1;
        if payload.trim_ascii() == b"[DONE]" {
            self.saw_done = true;
        } else if may_carry_report(payload) {
            self.report.merge(usage::parse_json(payload));
        }
    }

    /// What the stream has told us so far.
    pub fn report(&self) -> &BodyReport {
        &self.report
    }

    /// Whether `data: [DONE]` was seen (a stream without it was truncated).
    pub fn saw_done(&self) -> bool {
        self.saw_done
    }

    /// Number of `data:` events seen.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// Lines dropped for exceeding [`MAX_LINE_BYTES`].
    pub fn oversized_lines(&self) -> u64 {
        self.oversized_lines
    }
}

/// Cheap pre-check: whether `payload` contains one of [`NEEDLES`].
fn may_carry_report(payload: &[u8]) -> bool {
    NEEDLES
        .iter()
        .any(|needle| payload.windows(needle.len()).any(|w| w == *needle))
}

#[cfg(test)]
mod tests;
