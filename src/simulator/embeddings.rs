//! `POST /embeddings`: `input` is a string or an array of strings (token-id arrays
//! are rejected with 400 as on Venice); returns deterministic 8-float vectors,
//! bills `ceil(chars / 4)` (at least 1) input tokens per string at the model's
//! input price, and carries the same rate-limit and model headers as chat.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::faults;
use super::inference;
use super::models::{self, ModelKind};
use super::request;
use super::respond::{self, type_name, Invalid};
use super::SharedState;

const DIMENSIONS: usize = 8;

fn input_strings(input: Option<&Value>) -> Result<Vec<String>, Invalid> {
    let bad = |received: &str| {
        respond::invalid(
            Some("input"),
            "input must be a string or an array of strings",
            json!({ "code": "invalid_type", "expected": "string | string[]", "received": received }),
        )
    };
    match input {
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                other => Err(bad(type_name(Some(other)))),
            })
            .collect(),
        Some(Value::Array(_)) => Err(bad("empty array")),
        other => Err(bad(type_name(other))),
    }
}

/// A deterministic unit vector derived from the text (FNV-1a + xorshift).
fn embed(text: &str) -> Vec<f64> {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let mut v = Vec::with_capacity(DIMENSIONS);
    for _ in 0..DIMENSIONS {
        h ^= h << 13;
        h ^= h >> 7;
        h ^= h << 17;
        v.push((h >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0);
    }
    let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

fn tokens(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4).max(1)
}

/// The `POST /embeddings` handler.
pub async fn create(State(state): State<SharedState>, headers: HeaderMap, body: Bytes) -> Response {
    let map = match request::parse_object(&body) {
        Ok(m) => m,
        Err(invalid) => return invalid.into_response(),
    };
    let model_id = match map.get("model") {
        Some(Value::String(s)) => s.clone(),
        other => return respond::invalid_type("model", "string", type_name(other)).into_response(),
    };
    let inputs = match input_strings(map.get("input")) {
        Ok(i) => i,
        Err(invalid) => return invalid.into_response(),
    };
    let Some(resolved) = models::resolve(&model_id, ModelKind::Embedding) else {
        return respond::error(StatusCode::NOT_FOUND, "Model not found");
    };
    let model = resolved.model;
    let fault = state.faults.take(&headers);
    let prompt: u64 = inputs.iter().map(|s| tokens(s)).sum();
    let cost = model.cost_usd(prompt, 0, 0);
    let admitted = match inference::admit(&state, model, fault, prompt, cost) {
        Ok(a) => a,
        Err(resp) => return *resp,
    };
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, s)| json!({ "object": "embedding", "index": i, "embedding": embed(s) }))
        .collect();
    let full = Bytes::from(
        json!({
            "object": "list",
            "data": data,
            "model": model.id,
            "usage": { "prompt_tokens": prompt, "total_tokens": prompt },
        })
        .to_string(),
    );
    inference::finish(faults::json_with_fault(full, fault), model, &admitted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_and_vectors() {
        assert_eq!(input_strings(Some(&json!("a"))).expect("ok"), vec!["a"]);
        assert!(input_strings(Some(&json!([1, 2, 3]))).is_err());
        assert!(input_strings(Some(&json!([[1, 2]]))).is_err());
        assert!(input_strings(None).is_err());
        let v = embed("hello");
        assert_eq!(v.len(), DIMENSIONS);
        assert_eq!(v, embed("hello"));
        assert!((v.iter().map(|x| x * x).sum::<f64>() - 1.0).abs() < 1e-9);
        assert_eq!(tokens(""), 1);
        assert_eq!(tokens("abcde"), 2);
    }
}
