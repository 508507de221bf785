//! Unit tests of [`super::SseScanner`]: realistic Venice streams split at every byte, line
//! rules, over-long lines and in-band errors.

use super::*;
use crate::gateway::usage::{Cost, UpstreamError, Usage};

/// A realistic Venice stream: role chunk, reasoning, content, the usage chunk, `[DONE]`.
const STREAM: &str = concat!(
    ": keep-alive\n",
    "\n",
    "data: {\"id\":\"chatcmpl-9f\",\"object\":\"chat.completion.chunk\",\"created\":1759504980,\"model\":\"kimi-k2-5\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n",
    "\n",
    "data: {\"id\":\"chatcmpl-9f\",\"object\":\"chat.completion.chunk\",\"created\":1759504980,\"model\":\"kimi-k2-5\",\"choices\":[{\"index\":0,\"delta\":{\"reasoning_content\":\"The user wants a \\\"usage\\\" example; think.\"},\"finish_reason\":null}]}\n",
    "\n",
    "data: {\"id\":\"chatcmpl-9f\",\"object\":\"chat.completion.chunk\",\"created\":1759504980,\"model\":\"kimi-k2-5\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello, \"},\"finish_reason\":null}]}\n",
    "\n",
    "data: {\"id\":\"chatcmpl-9f\",\"object\":\"chat.completion.chunk\",\"created\":1759504980,\"model\":\"kimi-k2-5\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"w\u{f6}rld \u{1f30d}\\n```rust\\nfn main() {}\\n```\"},\"finish_reason\":null}]}\n",
    "\n",
    "data: {\"id\":\"chatcmpl-9f\",\"object\":\"chat.completion.chunk\",\"created\":1759504980,\"model\":\"kimi-k2-5\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n",
    "\n",
    "data: {\"id\":\"chatcmpl-9f\",\"object\":\"chat.completion.chunk\",\"created\":1759504980,\"model\":\"kimi-k2-5\",\"choices\":[],\"usage\":{\"prompt_tokens\":612,\"completion_tokens\":146,\"total_tokens\":758,\"prompt_tokens_details\":{\"cached_tokens\":512},\"completion_tokens_details\":{\"reasoning_tokens\":31}},\"cost\":{\"usd\":0.00042,\"diem\":0}}\n",
    "\n",
    "data: [DONE]\n",
    "\n",
);

#[derive(Debug, PartialEq)]
struct Outcome {
    report: BodyReport,
    saw_done: bool,
    events: u64,
    oversized: u64,
}

fn scan<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> Outcome {
    let mut s = SseScanner::new();
    for c in chunks {
        s.feed(c);
        assert!(s.partial.len() <= MAX_LINE_BYTES);
    }
    s.finish();
    Outcome {
        report: s.report().clone(),
        saw_done: s.saw_done(),
        events: s.events(),
        oversized: s.oversized_lines(),
    }
}

fn expected() -> Outcome {
    Outcome {
        report: BodyReport {
            usage: Some(Usage {
                prompt_tokens: 612,
                completion_tokens: 146,
                total_tokens: 758,
                cached_tokens: 512,
                cache_creation_tokens: 0,
                reasoning_tokens: 31,
            }),
            cost: Some(Cost {
                usd: 0.00042,
                diem: 0.0,
            }),
            model: Some("kimi-k2-5".into()),
            error: None,
        },
        saw_done: true,
        events: 7,
        oversized: 0,
    }
}

/// A tiny deterministic PRNG (xorshift64*), enough to pick split points.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Splits `bytes` into random pieces of 1..=max_len bytes.
fn random_chunks<'a>(bytes: &'a [u8], rng: &mut Rng, max_len: usize) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let n = (1 + rng.below(max_len)).min(rest.len());
        out.push(&rest[..n]);
        rest = &rest[n..];
    }
    out
}

#[test]
fn whole_stream() {
    assert_eq!(scan([STREAM.as_bytes()]), expected());
}

#[test]
fn every_two_part_split() {
    let b = STREAM.as_bytes();
    for i in 0..=b.len() {
        assert_eq!(scan([&b[..i], &b[i..]]), expected(), "split at {i}");
    }
}

#[test]
fn one_byte_chunks() {
    assert_eq!(scan(STREAM.as_bytes().chunks(1)), expected());
}

#[test]
fn random_splits() {
    let b = STREAM.as_bytes();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for round in 0..2_000 {
        let max_len = [2, 7, 64, 300, 4096][round % 5];
        let chunks = random_chunks(b, &mut rng, max_len);
        assert_eq!(scan(chunks.iter().copied()), expected(), "round {round}");
    }
}

#[test]
fn crlf_line_endings() {
    let crlf = STREAM.replace('\n', "\r\n");
    let b = crlf.as_bytes();
    assert_eq!(scan([b]), expected());
    for i in 0..=b.len() {
        assert_eq!(scan([&b[..i], &b[i..]]), expected(), "split at {i}");
    }
}

#[test]
fn no_space_after_colon_and_no_final_newline() {
    let s = "data:{\"model\":\"m\",\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4}}\ndata:[DONE]";
    let out = scan([s.as_bytes()]);
    assert!(out.saw_done);
    assert_eq!(out.events, 2);
    assert_eq!(out.report.usage.unwrap().total_tokens, 7);
    assert_eq!(out.report.model.as_deref(), Some("m"));
}

#[test]
fn finish_scans_unterminated_line_once() {
    let mut s = SseScanner::new();
    s.feed(b"data: {\"cost\":{\"usd\":0.5,\"diem\":0}}");
    assert_eq!(s.report().cost, None);
    s.finish();
    assert_eq!(s.report().cost.unwrap().usd, 0.5);
    assert_eq!(s.events(), 1);
    s.finish();
    assert_eq!(s.events(), 1);
}

#[test]
fn in_band_error() {
    let s = concat!(
        "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"model\":\"kimi-k2-5\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\n",
        "data: {\"error\":{\"message\":\"The model is currently overloaded. Please try again later.\",\"type\":\"server_error\",\"code\":\"model_overloaded\",\"param\":null,\"retry_after\":30}}\n\n",
        "data: [DONE]\n\n",
    );
    for chunks in [vec![s.as_bytes()], s.as_bytes().chunks(5).collect()] {
        let out = scan(chunks);
        assert!(out.saw_done);
        assert_eq!(out.events, 3);
        assert_eq!(out.report.usage, None);
        assert_eq!(
            out.report.error,
            Some(UpstreamError {
                message: "The model is currently overloaded. Please try again later.".into(),
                code: Some("model_overloaded".into()),
            })
        );
    }
}

#[test]
fn truncated_stream() {
    let b = STREAM.as_bytes();
    let cut = STREAM.find("data: {\"id\":\"chatcmpl-9f\",\"object\":\"chat.completion.chunk\",\"created\":1759504980,\"model\":\"kimi-k2-5\",\"choices\":[],").unwrap();
    let out = scan([&b[..cut + 40]]);
    assert!(!out.saw_done);
    // Five whole events plus the cut one, which `finish` scans (and cannot parse).
    assert_eq!(out.events, 6);
    assert_eq!(out.report, BodyReport::default());
    // Cut just before [DONE]: usage is known, the end is not.
    let cut = STREAM.find("data: [DONE]").unwrap();
    let out = scan([&b[..cut]]);
    assert!(!out.saw_done);
    assert_eq!(out.report, expected().report);
}

#[test]
fn ignores_non_data_lines() {
    let s = concat!(
        ": comment with \"usage\":{\"prompt_tokens\":1}\n",
        "event: message\n",
        "id: 42\n",
        "retry: 1000\n",
        "\n",
        "  data: {\"usage\":{\"prompt_tokens\":1}}\n",
        "Data: {\"usage\":{\"prompt_tokens\":1}}\n",
        "event: error\n",
        "data: {\"usage\":{\"prompt_tokens\":2,\"completion_tokens\":0}}\n",
    );
    let out = scan([s.as_bytes()]);
    assert_eq!(out.events, 1);
    assert_eq!(out.report.usage.unwrap().prompt_tokens, 2);
    assert!(!out.saw_done);
}

#[test]
fn only_payloads_with_keys_are_parsed() {
    // A content chunk's model is not picked up; the usage chunk's is.
    let s = concat!(
        "data: {\"model\":\"content-model\",\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\n",
        "data: {\"model\":\"usage-model\",\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1}}\n",
    );
    let out = scan([s.as_bytes()]);
    assert_eq!(out.report.model.as_deref(), Some("usage-model"));
    let out = scan([s.lines().next().unwrap().as_bytes()]);
    assert_eq!(out.report.model, None);
    assert_eq!(out.events, 1);
    assert!(may_carry_report(br#"{"error":"x"}"#));
    assert!(may_carry_report(br#"{"cost":{}}"#));
    assert!(!may_carry_report(br#"{"usage_x":1}"#));
    assert!(!may_carry_report(b""));
}

#[test]
fn oversized_line_is_dropped_and_bounded() {
    let mut big = b"data: {\"usage\":{\"prompt_tokens\":999},\"pad\":\"".to_vec();
    big.resize(MAX_LINE_BYTES + 10, b'a');
    big.extend_from_slice(b"\"}\n");
    big.extend_from_slice(STREAM.as_bytes());
    let want = Outcome {
        oversized: 1,
        ..expected()
    };
    assert_eq!(scan([&big[..]]), want);
    for size in [1000, 4096, 65_536, MAX_LINE_BYTES, MAX_LINE_BYTES + 1] {
        assert_eq!(scan(big.chunks(size)), want, "chunks of {size}");
    }
    let mut rng = Rng(7);
    for _ in 0..5 {
        let chunks = random_chunks(&big, &mut rng, 200_000);
        assert_eq!(scan(chunks.iter().copied()), want);
    }
    // Unterminated oversized line at the end of the stream.
    let mut tail = STREAM.as_bytes().to_vec();
    tail.extend(std::iter::repeat_n(b'x', MAX_LINE_BYTES + 1));
    let out = scan(tail.chunks(100_000));
    assert_eq!(
        out,
        Outcome {
            oversized: 1,
            ..expected()
        }
    );
}

#[test]
fn line_of_exactly_max_bytes_is_kept() {
    let head = b"data: {\"cost\":{\"usd\":1,\"diem\":0},\"pad\":\"";
    let mut line = head.to_vec();
    line.resize(MAX_LINE_BYTES - 2, b'a');
    line.extend_from_slice(b"\"}");
    assert_eq!(line.len(), MAX_LINE_BYTES);
    line.push(b'\n');
    for size in [line.len(), 100_000, MAX_LINE_BYTES] {
        let out = scan(line.chunks(size));
        assert_eq!(out.oversized, 0);
        assert_eq!(out.report.cost.unwrap().usd, 1.0);
    }
    // One byte more (e.g. a `\r`) and it is dropped.
    let mut longer = line[..MAX_LINE_BYTES].to_vec();
    longer.extend_from_slice(b"\r\n");
    for size in [longer.len(), 100_000, MAX_LINE_BYTES] {
        let out = scan(longer.chunks(size));
        assert_eq!(out.oversized, 1, "chunks of {size}");
        assert_eq!(out.report.cost, None);
    }
}

#[test]
fn garbage_bytes_do_not_panic() {
    let s: &[u8] = b"data: {\"usage\":\xff\xfe\x00{\"prompt_tokens\":1}}\n\
        data: \xc3\x28 \"error\" \xa0\xa1\n\
        \xf0\x28\x8c\xbc\r\r\n\
        data: {\"error\":\"\xed\xa0\x80\"}\n\
        data: [DONE]\n";
    let out = scan([s]);
    assert!(out.saw_done);
    assert_eq!(out.events, 4);
    assert_eq!(out.report.usage, None);

    let mut rng = Rng(42);
    let noise: Vec<u8> = (0..200_000)
        .map(|_| match rng.below(10) {
            0 => b'\n',
            1 => b'"',
            _ => rng.next() as u8,
        })
        .collect();
    let mut with_keys = noise.clone();
    with_keys.extend_from_slice(b"\ndata: \"usage\" \"cost\" \"error\" {\n");
    for bytes in [&noise, &with_keys] {
        let whole = scan([&bytes[..]]);
        let pieces = scan(random_chunks(bytes, &mut rng, 500).iter().copied());
        assert_eq!(whole, pieces);
    }
}

#[test]
fn empty_feeds_are_harmless() {
    let mut s = SseScanner::new();
    s.feed(b"");
    s.feed(b"data: [DO");
    s.feed(b"");
    s.feed(b"NE]\n");
    s.finish();
    assert!(s.saw_done());
    assert_eq!(s.events(), 1);
    assert_eq!(s.report(), &BodyReport::default());
}
