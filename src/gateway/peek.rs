//! Reading top-level fields from the start of a JSON body that may be cut anywhere.
//!
//! Owns [`top_level_fields`]: admission needs a chat request's `model` (and its max tokens)
//! before the upstream is contacted, from as few body bytes as possible. OpenAI-style clients put
//! `model` first, so a prefix is usually enough. Only scalar values at depth 1 are reported; a
//! value cut by the end of the prefix is not.

/// A top-level scalar found in a JSON prefix.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    Str(String),
    Num(f64),
}

/// Top-level `key: scalar` pairs of a JSON object prefix, in order. Never fails: malformed or
/// truncated input simply yields what was complete.
pub fn top_level_fields(prefix: &[u8]) -> Vec<(String, Scalar)> {
    let mut out = Vec::new();
    let mut i = skip_ws(prefix, 0);
    if prefix.get(i) != Some(&b'{') {
        return out;
    }
    i += 1;
    loop {
        i = skip_ws(prefix, i);
        match prefix.get(i) {
            Some(b'"') => {}
            _ => return out,
        }
        let Some((key, after_key)) = string(prefix, i) else {
            return out;
        };
        i = skip_ws(prefix, after_key);
        if prefix.get(i) != Some(&b':') {
            return out;
        }
        i = skip_ws(prefix, i + 1);
        let Some((value, after_value)) = value(prefix, i) else {
            return out;
        };
        if let Some(v) = value {
            out.push((key, v));
        }
        i = skip_ws(prefix, after_value);
        match prefix.get(i) {
            Some(b',') => i += 1,
            _ => return out,
        }
    }
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while b.get(i).is_some_and(|c| c.is_ascii_whitespace()) {
        i += 1;
    }
    i
}

/// A complete string starting at `b[i] == '"'`: its (unescaped) text and the index after it.
fn string(b: &[u8], i: usize) -> Option<(String, usize)> {
    let mut j = i + 1;
    while j < b.len() {
        match b[j] {
            b'\\' => j += 2,
            b'"' => {
                let raw = std::str::from_utf8(&b[i..=j]).ok()?;
                let text: String = serde_json::from_str(raw).ok()?;
                return Some((text, j + 1));
            }
            _ => j += 1,
        }
    }
    None
}

/// A complete value at `i`: `Some(scalar)` for strings and numbers, `None` for others, with the
/// index after it. `None` overall when the value is cut off.
fn value(b: &[u8], i: usize) -> Option<(Option<Scalar>, usize)> {
    match *b.get(i)? {
        b'"' => string(b, i).map(|(s, end)| (Some(Scalar::Str(s)), end)),
        b'{' | b'[' => skip_nested(b, i).map(|end| (None, end)),
        _ => {
            let end = (i..b.len())
                .find(|&j| matches!(b[j], b',' | b'}' | b']') || b[j].is_ascii_whitespace())?;
            let text = std::str::from_utf8(&b[i..end]).ok()?;
            Some((text.parse::<f64>().ok().map(Scalar::Num), end))
        }
    }
}

/// The index after the object or array starting at `i`.
fn skip_nested(b: &[u8], i: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut j = i;
    while j < b.len() {
        match b[j] {
            b'"' => {
                j = string(b, j)?.1;
                continue;
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth -= 1;
                if depth == 0 {
                    return Some(j + 1);
                }
            }
            _ => {}
        }
        j += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(prefix: &str, key: &str) -> Option<Scalar> {
        top_level_fields(prefix.as_bytes())
            .into_iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    #[test]
    fn reads_model_and_numbers_at_the_top_level_only() {
        let body = r#"{"messages":[{"role":"user","model":"nested"}],"model":"kimi-k2-5","max_tokens":64,"stream":true}"#;
        assert_eq!(get(body, "model"), Some(Scalar::Str("kimi-k2-5".into())));
        assert_eq!(get(body, "max_tokens"), Some(Scalar::Num(64.0)));
        assert_eq!(get(body, "stream"), None, "booleans are not reported");
    }

    #[test]
    fn a_prefix_cut_anywhere_never_panics_and_never_invents_values() {
        let body = r#"{ "model" : "zai-org-glm-5-1", "messages": [{"content": "a \"quoted\" }"}], "max_completion_tokens": 4096 }"#;
        for cut in 0..=body.len() {
            let fields = top_level_fields(&body.as_bytes()[..cut]);
            for (k, v) in fields {
                match (k.as_str(), v) {
                    ("model", Scalar::Str(s)) => assert_eq!(s, "zai-org-glm-5-1"),
                    ("max_completion_tokens", Scalar::Num(n)) => assert_eq!(n, 4096.0),
                    other => panic!("unexpected {other:?} at cut {cut}"),
                }
            }
        }
        assert_eq!(
            get(body, "model"),
            Some(Scalar::Str("zai-org-glm-5-1".into()))
        );
    }

    #[test]
    fn garbage_yields_nothing() {
        for s in [
            "",
            "[]",
            "nul",
            "{\"model\" 1}",
            "{\"model\":\"\\u12",
            "\u{7f}{",
        ] {
            assert!(get(s, "model").is_none(), "{s}");
        }
    }
}
