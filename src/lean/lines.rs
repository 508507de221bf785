//! Line framing of a child's output that never trusts the child.
//!
//! Owns [`LineReader`], which splits a byte stream into lines without ever holding more than a
//! set number of bytes of one line (a longer line is skipped whole and reported by length), and
//! [`preview`], the bounded form in which anything the child wrote may reach a log.

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// At most 300 characters of `bytes`, lossily decoded, for logs.
pub(super) fn preview(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(1200)]);
    let mut out: String = text.chars().take(300).collect();
    if out.len() < text.len() || bytes.len() > 1200 {
        out.push('…');
    }
    out
}

/// One line from a [`LineReader`].
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Line {
    /// The line without its `\n` (or `\r\n`).
    Text(Vec<u8>),
    /// A line longer than the limit was skipped; its length.
    TooLong(usize),
}

/// Splits a byte stream into lines, never holding more than `max` bytes of one line.
pub(super) struct LineReader<R> {
    inner: R,
    buf: Vec<u8>,
    max: usize,
    /// Bytes of an over-long line skipped so far (`Some` while skipping).
    skipping: Option<usize>,
}

impl<R: AsyncBufRead + Unpin> LineReader<R> {
    pub(super) fn new(inner: R, max: usize) -> Self {
        Self {
            inner,
            buf: Vec::new(),
            max,
            skipping: None,
        }
    }

    /// The next line; `None` at end of stream (a last line without `\n` still counts).
    pub(super) async fn next(&mut self) -> std::io::Result<Option<Line>> {
        loop {
            let chunk = self.inner.fill_buf().await?;
            if chunk.is_empty() {
                if let Some(n) = self.skipping.take() {
                    return Ok(Some(Line::TooLong(n)));
                }
                if self.buf.is_empty() {
                    return Ok(None);
                }
                return Ok(Some(self.finish()));
            }
            let (take, newline) = match chunk.iter().position(|&b| b == b'\n') {
                Some(i) => (i, true),
                None => (chunk.len(), false),
            };
            match self.skipping.as_mut() {
                Some(n) => *n += take,
                None if self.buf.len() + take > self.max => {
                    self.skipping = Some(self.buf.len() + take);
                    self.buf = Vec::new();
                }
                None => self.buf.extend_from_slice(&chunk[..take]),
            }
            self.inner.consume(take + usize::from(newline));
            if newline {
                if let Some(n) = self.skipping.take() {
                    return Ok(Some(Line::TooLong(n)));
                }
                return Ok(Some(self.finish()));
            }
        }
    }

    fn finish(&mut self) -> Line {
        let mut line = std::mem::take(&mut self.buf);
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        Line::Text(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::BufReader;

    async fn all(input: &[u8], max: usize) -> Vec<Line> {
        // A tiny buffer makes lines span many reads.
        let mut r = LineReader::new(BufReader::with_capacity(3, input), max);
        let mut out = Vec::new();
        while let Some(l) = r.next().await.expect("in-memory read") {
            out.push(l);
        }
        out
    }

    #[tokio::test]
    async fn splits_lines_and_strips_cr() {
        let lines = all(b"{\"a\":1}\r\n\nlast", 100).await;
        assert_eq!(
            lines,
            vec![
                Line::Text(b"{\"a\":1}".to_vec()),
                Line::Text(Vec::new()),
                Line::Text(b"last".to_vec())
            ]
        );
    }

    #[tokio::test]
    async fn an_over_long_line_is_skipped_whole_and_the_next_one_kept() {
        let mut input = vec![b'x'; 50];
        input.extend_from_slice(b"\nok\n");
        input.extend(vec![b'y'; 20]);
        let lines = all(&input, 10).await;
        assert_eq!(
            lines,
            vec![
                Line::TooLong(50),
                Line::Text(b"ok".to_vec()),
                Line::TooLong(20)
            ]
        );
    }

    #[test]
    fn preview_is_bounded() {
        let long = "é".repeat(5000);
        let p = preview(long.as_bytes());
        assert!(p.chars().count() <= 301);
        assert!(p.ends_with('…'));
    }
}
