//! Unit tests of [`super::parse_json`] and the usage/cost types: lenient fields, numeric
//! strings, errors and what is skipped.

use super::*;

fn p(s: &str) -> BodyReport {
    parse_json(s.as_bytes())
}

fn err(message: &str, code: Option<&str>) -> Option<UpstreamError> {
    Some(UpstreamError {
        message: message.into(),
        code: code.map(Into::into),
    })
}

#[test]
fn chat_completion_with_usage_and_cost() {
    let r = p(r#"{
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1759504980,
        "model": "kimi-k2-5",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi",
                     "reasoning_content": null}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 612, "completion_tokens": 146, "total_tokens": 758,
                  "prompt_tokens_details": {"cached_tokens": 512,
                                            "cache_creation_input_tokens": 64},
                  "completion_tokens_details": {"reasoning_tokens": 40}},
        "cost": {"diem": 0, "usd": 0.00042},
        "venice_parameters": {"enable_web_search": "off"}
    }"#);
    assert_eq!(
        r,
        BodyReport {
            usage: Some(Usage {
                prompt_tokens: 612,
                completion_tokens: 146,
                total_tokens: 758,
                cached_tokens: 512,
                cache_creation_tokens: 64,
                reasoning_tokens: 40,
            }),
            cost: Some(Cost {
                usd: 0.00042,
                diem: 0.0
            }),
            model: Some("kimi-k2-5".into()),
            error: None,
        }
    );
}

#[test]
fn nullable_details_are_zero() {
    let r = p(
        r#"{"usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15,
        "prompt_tokens_details": null,
        "completion_tokens_details": {"reasoning_tokens": null}}}"#,
    );
    let u = r.usage.unwrap();
    assert_eq!(
        (u.cached_tokens, u.cache_creation_tokens, u.reasoning_tokens),
        (0, 0, 0)
    );
    assert_eq!(u.total_tokens, 15);
}

#[test]
fn missing_total_is_prompt_plus_completion() {
    let u = p(r#"{"usage": {"prompt_tokens": 10, "completion_tokens": 5}}"#)
        .usage
        .unwrap();
    assert_eq!(u.total_tokens, 15);
    let u = p(r#"{"usage": {"prompt_tokens": 7}}"#).usage.unwrap();
    assert_eq!(
        (u.prompt_tokens, u.completion_tokens, u.total_tokens),
        (7, 0, 7)
    );
    let u = p(r#"{"usage": {"prompt_tokens": 18446744073709551615, "completion_tokens": 5}}"#)
        .usage
        .unwrap();
    assert_eq!(u.total_tokens, u64::MAX);
}

#[test]
fn embeddings_response() {
    let r = p(r#"{"object": "list", "model": "text-embedding-bge-m3",
        "data": [{"object": "embedding", "index": 0, "embedding": [0.1, -0.2, 0.3]}],
        "usage": {"prompt_tokens": 8, "total_tokens": 8}}"#);
    assert_eq!(r.model.as_deref(), Some("text-embedding-bge-m3"));
    let u = r.usage.unwrap();
    assert_eq!(
        (u.prompt_tokens, u.completion_tokens, u.total_tokens),
        (8, 0, 8)
    );
    assert_eq!(r.cost, None);
}

#[test]
fn counts_and_costs_as_strings_or_floats() {
    let r = p(
        r#"{"usage": {"prompt_tokens": "12", "completion_tokens": 3.0,
        "total_tokens": " 15 "}, "cost": {"usd": "0.0015", "diem": "0.5"}}"#,
    );
    let u = r.usage.unwrap();
    assert_eq!(
        (u.prompt_tokens, u.completion_tokens, u.total_tokens),
        (12, 3, 15)
    );
    assert_eq!(
        r.cost,
        Some(Cost {
            usd: 0.0015,
            diem: 0.5
        })
    );
}

#[test]
fn cost_missing_currency_is_zero() {
    assert_eq!(
        p(r#"{"cost": {"usd": 0.25}}"#).cost,
        Some(Cost {
            usd: 0.25,
            diem: 0.0
        })
    );
    assert_eq!(
        p(r#"{"cost": {"diem": 1}}"#).cost,
        Some(Cost {
            usd: 0.0,
            diem: 1.0
        })
    );
    assert_eq!(p(r#"{"cost": {}}"#).cost, None);
    assert_eq!(p(r#"{"cost": {"usd": "NaN", "diem": null}}"#).cost, None);
    assert_eq!(p(r#"{"cost": null}"#).cost, None);
    assert_eq!(p(r#"{"cost": 0.5}"#).cost, None);
}

#[test]
fn wrong_type_loses_only_that_field() {
    let r = p(r#"{"usage": "x", "cost": {"usd": 0.1, "diem": 0}, "model": "m"}"#);
    assert_eq!(r.usage, None);
    assert_eq!(r.cost.unwrap().usd, 0.1);
    assert_eq!(r.model.as_deref(), Some("m"));

    let r = p(r#"{"usage": {"prompt_tokens": -3, "completion_tokens": "x",
        "total_tokens": 9, "prompt_tokens_details": [1]}, "model": 5, "cost": [1]}"#);
    let u = r.usage.unwrap();
    assert_eq!(
        (u.prompt_tokens, u.completion_tokens, u.total_tokens),
        (0, 0, 9)
    );
    assert_eq!(u.cached_tokens, 0);
    assert_eq!(r.model, None);
    assert_eq!(r.cost, None);
}

#[test]
fn usage_null_or_empty_is_none() {
    // OpenAI content chunks carry `"usage": null`.
    assert_eq!(p(r#"{"usage": null, "model": "m"}"#).usage, None);
    assert_eq!(p(r#"{"usage": {}}"#).usage, None);
}

#[test]
fn venice_string_error() {
    let r = p(r#"{"error": "Insufficient USD or Diem balance to complete request."}"#);
    assert_eq!(
        r.error,
        err(
            "Insufficient USD or Diem balance to complete request.",
            None
        )
    );
    let r = p(r#"{"error": "Rate limit exceeded", "code": "RATE_LIMIT_EXCEEDED"}"#);
    assert_eq!(
        r.error,
        err("Rate limit exceeded", Some("RATE_LIMIT_EXCEEDED"))
    );
}

#[test]
fn venice_validation_error_with_details() {
    let r = p(r#"{"error": "Invalid request parameters",
        "details": {"_errors": [], "temperature": {"_errors": ["Number must be <= 2"]}},
        "issues": [{"code": "too_big", "path": ["temperature"]}]}"#);
    assert_eq!(r.error, err("Invalid request parameters", None));
    assert_eq!(r.usage, None);
}

#[test]
fn openai_error_object() {
    let r = p(
        r#"{"error": {"message": "Your request exceeds the model's maximum context",
        "type": "invalid_request_error", "param": "messages",
        "code": "context_length_exceeded"}}"#,
    );
    assert_eq!(
        r.error,
        err(
            "Your request exceeds the model's maximum context",
            Some("context_length_exceeded")
        )
    );
}

#[test]
fn openai_error_code_variants() {
    let r = p(r#"{"error": {"message": "m", "code": 429}}"#);
    assert_eq!(r.error, err("m", Some("429")));
    let r = p(r#"{"error": {"message": "m", "type": "server_error", "code": null}}"#);
    assert_eq!(r.error, err("m", Some("server_error")));
    let r = p(r#"{"error": {"message": "m", "type": "server_error"}}"#);
    assert_eq!(r.error, err("m", Some("server_error")));
    let r = p(r#"{"error": {"message": "m"}}"#);
    assert_eq!(r.error, err("m", None));
    let r = p(r#"{"error": {"code": "model_overloaded"}}"#);
    assert_eq!(r.error, err("model_overloaded", Some("model_overloaded")));
    let r = p(r#"{"error": {"param": null}}"#);
    assert_eq!(r.error, err(r#"{"param":null}"#, None));
}

#[test]
fn in_band_stream_error() {
    let r = p(
        r#"{"error":{"message":"The model is currently overloaded.","type":"server_error","code":"model_overloaded","param":null,"retry_after":30}}"#,
    );
    assert_eq!(
        r.error,
        err(
            "The model is currently overloaded.",
            Some("model_overloaded")
        )
    );
}

#[test]
fn empty_or_null_errors_are_none() {
    for s in [
        r#"{"error": null}"#,
        r#"{"error": ""}"#,
        r#"{"error": {}}"#,
        r#"{"error": false}"#,
        r#"{"error": 3}"#,
    ] {
        assert_eq!(p(s).error, None, "{s}");
    }
}

#[test]
fn non_json_and_non_objects_are_empty() {
    for s in [
        "",
        " ",
        "null",
        "[]",
        "[1,2]",
        "42",
        "\"usage\"",
        "true",
        "<html>502</html>",
        "{",
        "{\"usage\":",
        "{\"usage\": {\"prompt_tokens\": 1}} trailing",
        "[DONE]",
    ] {
        assert!(p(s).is_empty(), "{s:?}");
    }
    assert!(parse_json(b"\xff\xfe{\"usage\":{}}").is_empty());
    assert!(p(r#"{"id": "x", "choices": []}"#).is_empty());
}

#[test]
fn bom_and_whitespace_are_tolerated() {
    let r = parse_json(b"\xEF\xBB\xBF  {\"model\": \"m\"}\r\n");
    assert_eq!(r.model.as_deref(), Some("m"));
}

#[test]
fn deep_nesting_does_not_panic() {
    let deep = format!("{{\"x\":{}{}}}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(p(&deep).is_empty());
    let deep = format!("{{\"usage\":{}1{}}}", "[".repeat(5_000), "]".repeat(5_000));
    assert!(p(&deep).is_empty());
}

#[test]
fn duplicate_keys_last_wins() {
    let r = p(r#"{"model": "a", "model": "b"}"#);
    assert_eq!(r.model.as_deref(), Some("b"));
}

#[test]
fn merge_later_some_wins() {
    let mut a = BodyReport {
        usage: Some(Usage {
            prompt_tokens: 1,
            ..Usage::default()
        }),
        cost: None,
        model: Some("a".into()),
        error: None,
    };
    a.merge(BodyReport {
        usage: None,
        cost: Some(Cost {
            usd: 1.0,
            diem: 0.0,
        }),
        model: Some("b".into()),
        error: err("boom", None),
    });
    assert_eq!(a.usage.unwrap().prompt_tokens, 1);
    assert_eq!(a.cost.unwrap().usd, 1.0);
    assert_eq!(a.model.as_deref(), Some("b"));
    assert_eq!(a.error, err("boom", None));
    a.merge(BodyReport::default());
    assert_eq!(a.model.as_deref(), Some("b"));
    assert_eq!(a.error, err("boom", None));
}

#[test]
fn json_f64_accepts_numbers_and_strings() {
    assert_eq!(json_f64(&serde_json::json!(1.5)), Some(1.5));
    assert_eq!(json_f64(&serde_json::json!("2.5")), Some(2.5));
    assert_eq!(json_f64(&serde_json::json!("inf")), None);
    assert_eq!(json_f64(&serde_json::json!(null)), None);
    assert_eq!(json_f64(&serde_json::json!({})), None);
}
