//! Per-model token prices and cost computation.
//!
//! Owns the [`PriceTable`]: seeded from the config's `[pricing.models]`, refreshed from Venice's
//! `GET /models` (`model_spec.pricing`), and used to compute a request's cost when the response
//! carries no `cost` object.
//!
//! A model id with a feature suffix (`zai-org-glm-5-1:enable_web_search=on`) is priced as its
//! base id unless the table has the full id.

use std::collections::HashMap;

use serde::Serialize;
use serde_json::Value;

use crate::gateway::usage::{json_f64, Cost, Usage};

/// One default price row: id, input, output, cache read, cache write (USD per 1M tokens).
type PriceRow = (&'static str, f64, f64, Option<f64>, Option<f64>);

/// facts/venice-api.md §5 (Venice pricing page of 2026-08-21).
const VENICE_DEFAULTS: &[PriceRow] = &[
    ("zai-org-glm-5-1", 1.54, 4.84, Some(0.29), None),
    ("kimi-k2-5", 0.56, 3.50, Some(0.22), None),
    ("minimax-m25", 0.27, 0.95, Some(0.03), None),
    (
        "qwen3-coder-480b-a35b-instruct-turbo",
        0.35,
        1.50,
        Some(0.04),
        None,
    ),
    ("deepseek-v4-flash", 0.14, 0.28, Some(0.03), None),
    ("llama-3.3-70b", 0.70, 2.80, None, None),
    ("openai-gpt-oss-120b", 0.07, 0.30, None, None),
    ("venice-uncensored-1-2", 0.20, 0.90, None, None),
    ("claude-sonnet-4-6", 3.60, 18.00, Some(0.36), Some(4.50)),
    ("text-embedding-bge-m3", 0.15, 0.60, None, None),
];

/// USD per one million tokens for one model.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct ModelPrice {
    pub input: f64,
    pub output: f64,
    /// Cached prompt tokens (cache read); `None` bills them as input.
    pub cache_input: Option<f64>,
    /// Prompt tokens written to the cache; `None` bills them as input.
    pub cache_write: Option<f64>,
}

/// Prices by model id.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PriceTable {
    models: HashMap<String, ModelPrice>,
}

impl PriceTable {
    pub fn new(models: HashMap<String, ModelPrice>) -> Self {
        Self { models }
    }

    /// The published Venice prices of the common coding models (facts/venice-api.md §5).
    pub fn venice_defaults() -> Self {
        let models = VENICE_DEFAULTS
            .iter()
            .map(|&(id, input, output, cache_input, cache_write)| {
                let price = ModelPrice {
                    input,
                    output,
                    cache_input,
                    cache_write,
                };
                (id.to_owned(), price)
            })
            .collect();
        Self { models }
    }

    /// The price of `model`: its exact id, else its id without a `:feature` suffix.
    pub fn get(&self, model: &str) -> Option<&ModelPrice> {
        self.models.get(model).or_else(|| {
            let (base, _suffix) = model.split_once(':')?;
            self.models.get(base)
        })
    }

    /// Sets (or replaces) the price of one model.
    pub fn insert(&mut self, model: impl Into<String>, price: ModelPrice) {
        self.models.insert(model.into(), price);
    }

    pub fn len(&self) -> usize {
        self.models.len()
    }

    pub fn is_empty(&self) -> bool {
        self.models.is_empty()
    }

    /// Cost of `usage` on `model` in USD (Diem bills 1:1 in USD terms, so `diem` is 0 here: the
    /// split between currencies is only known when Venice sends `cost`). A model id with a
    /// `:suffix` (feature suffix) is priced as its base id. Unknown model: `None`.
    ///
    /// Cached and cache-creation tokens are part of `prompt_tokens` and billed at their own
    /// rates (input rate when the model has none); reasoning tokens are part of
    /// `completion_tokens` and not billed again.
    pub fn cost(&self, model: &str, usage: &Usage) -> Option<Cost> {
        let p = self.get(model)?;
        let cached = usage.cached_tokens;
        let created = usage.cache_creation_tokens;
        let plain = usage
            .prompt_tokens
            .saturating_sub(cached)
            .saturating_sub(created);
        let micro_usd = plain as f64 * p.input
            + cached as f64 * p.cache_input.unwrap_or(p.input)
            + created as f64 * p.cache_write.unwrap_or(p.input)
            + usage.completion_tokens as f64 * p.output;
        Some(Cost {
            usd: micro_usd / 1e6,
            diem: 0.0,
        })
    }

    /// Merges the prices of a `GET /models` response body; returns how many models were read.
    /// Models without `model_spec.pricing.input.usd`/`output.usd` are skipped.
    ///
    /// Prices may be numbers or numeric strings; negative or non-finite prices are skipped.
    /// Garbage gives 0 and leaves the table unchanged.
    pub fn merge_models_response(&mut self, body: &[u8]) -> usize {
        let Ok(doc) = serde_json::from_slice::<Value>(body) else {
            return 0;
        };
        let Some(entries) = doc.get("data").and_then(Value::as_array) else {
            return 0;
        };
        let mut merged = 0;
        for entry in entries {
            if let Some((id, price)) = model_price(entry) {
                self.models.insert(id.to_owned(), price);
                merged += 1;
            }
        }
        merged
    }
}

/// One `/models` entry's id and price, if it has an id and input and output USD prices.
fn model_price(entry: &Value) -> Option<(&str, ModelPrice)> {
    let id = entry
        .get("id")?
        .as_str()
        .filter(|id| !id.trim().is_empty())?;
    let pricing = entry.get("model_spec")?.get("pricing")?;
    let usd = |key: &str| pricing.get(key).and_then(usd_price);
    Some((
        id,
        ModelPrice {
            input: usd("input")?,
            output: usd("output")?,
            cache_input: usd("cache_input"),
            cache_write: usd("cache_write"),
        },
    ))
}

/// `{"usd": x, ...}` (or a bare number) as a usable price.
fn usd_price(v: &Value) -> Option<f64> {
    let price = match v {
        Value::Object(o) => o.get("usd").and_then(json_f64)?,
        other => json_f64(other)?,
    };
    (price >= 0.0).then_some(price)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(prompt: u64, completion: u64) -> Usage {
        Usage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            total_tokens: prompt + completion,
            ..Usage::default()
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn defaults_match_the_published_table() {
        let t = PriceTable::venice_defaults();
        assert_eq!(t.len(), 10);
        assert!(!t.is_empty());
        assert_eq!(
            t.get("kimi-k2-5"),
            Some(&ModelPrice {
                input: 0.56,
                output: 3.5,
                cache_input: Some(0.22),
                cache_write: None,
            })
        );
        assert_eq!(
            t.get("claude-sonnet-4-6"),
            Some(&ModelPrice {
                input: 3.6,
                output: 18.0,
                cache_input: Some(0.36),
                cache_write: Some(4.5),
            })
        );
        let llama = t.get("llama-3.3-70b").unwrap();
        assert_eq!(
            (llama.input, llama.output, llama.cache_input),
            (0.7, 2.8, None)
        );
        for id in [
            "zai-org-glm-5-1",
            "minimax-m25",
            "qwen3-coder-480b-a35b-instruct-turbo",
            "deepseek-v4-flash",
            "openai-gpt-oss-120b",
            "venice-uncensored-1-2",
            "text-embedding-bge-m3",
        ] {
            assert!(t.get(id).is_some(), "{id}");
        }
    }

    #[test]
    fn get_strips_feature_suffix() {
        let mut t = PriceTable::venice_defaults();
        let glm = *t.get("zai-org-glm-5-1").unwrap();
        assert_eq!(t.get("zai-org-glm-5-1:enable_web_search=on"), Some(&glm));
        assert_eq!(
            t.get("zai-org-glm-5-1:enable_web_search=on&disable_thinking=true"),
            Some(&glm)
        );
        assert_eq!(t.get("unknown:x=y"), None);
        assert_eq!(t.get(""), None);
        assert_eq!(t.get(":"), None);
        // An exact id with a colon wins over its base.
        let special = ModelPrice {
            input: 9.0,
            output: 9.0,
            ..ModelPrice::default()
        };
        t.insert("zai-org-glm-5-1:special", special);
        assert_eq!(t.get("zai-org-glm-5-1:special"), Some(&special));
    }

    #[test]
    fn cost_plain() {
        let t = PriceTable::venice_defaults();
        // 1M in + 1M out on kimi-k2-5: 0.56 + 3.50.
        let c = t.cost("kimi-k2-5", &usage(1_000_000, 1_000_000)).unwrap();
        assert!(close(c.usd, 4.06), "{}", c.usd);
        assert_eq!(c.diem, 0.0);
        // The facts' example: 612 in, 146 out on llama-3.3-70b.
        let c = t.cost("llama-3.3-70b", &usage(612, 146)).unwrap();
        assert!(close(c.usd, (612.0 * 0.7 + 146.0 * 2.8) / 1e6));
        assert_eq!(t.cost("kimi-k2-5", &Usage::default()).unwrap().usd, 0.0);
    }

    #[test]
    fn cost_with_cache_read_and_write() {
        let t = PriceTable::venice_defaults();
        let u = Usage {
            prompt_tokens: 10_000,
            completion_tokens: 500,
            total_tokens: 10_500,
            cached_tokens: 6_000,
            cache_creation_tokens: 3_000,
            reasoning_tokens: 200,
        };
        let c = t.cost("claude-sonnet-4-6", &u).unwrap();
        let want = (1_000.0 * 3.6 + 6_000.0 * 0.36 + 3_000.0 * 4.5 + 500.0 * 18.0) / 1e6;
        assert!(close(c.usd, want), "{} vs {want}", c.usd);
        // No cache-write price: written tokens bill as input.
        let c = t.cost("kimi-k2-5", &u).unwrap();
        let want = (1_000.0 * 0.56 + 6_000.0 * 0.22 + 3_000.0 * 0.56 + 500.0 * 3.5) / 1e6;
        assert!(close(c.usd, want));
        // No cache prices at all: everything in the prompt bills as input.
        let c = t.cost("llama-3.3-70b", &u).unwrap();
        assert!(close(c.usd, (10_000.0 * 0.7 + 500.0 * 2.8) / 1e6));
    }

    #[test]
    fn reasoning_tokens_are_not_double_counted() {
        let t = PriceTable::venice_defaults();
        let mut u = usage(100, 1_000);
        let base = t.cost("kimi-k2-5", &u).unwrap().usd;
        u.reasoning_tokens = 800;
        assert_eq!(t.cost("kimi-k2-5", &u).unwrap().usd, base);
    }

    #[test]
    fn cost_saturates_inconsistent_cache_counts() {
        let t = PriceTable::venice_defaults();
        let u = Usage {
            prompt_tokens: 100,
            cached_tokens: 150,
            cache_creation_tokens: 50,
            ..Usage::default()
        };
        let c = t.cost("claude-sonnet-4-6", &u).unwrap();
        assert!(close(c.usd, (150.0 * 0.36 + 50.0 * 4.5) / 1e6));
        let huge = Usage {
            prompt_tokens: u64::MAX,
            completion_tokens: u64::MAX,
            ..Usage::default()
        };
        assert!(t.cost("kimi-k2-5", &huge).unwrap().usd.is_finite());
    }

    #[test]
    fn cost_unknown_model_and_suffix() {
        let t = PriceTable::venice_defaults();
        assert_eq!(t.cost("no-such-model", &usage(1, 1)), None);
        let plain = t.cost("zai-org-glm-5-1", &usage(1000, 1000)).unwrap();
        let suffixed = t
            .cost("zai-org-glm-5-1:enable_web_search=on", &usage(1000, 1000))
            .unwrap();
        assert_eq!(plain, suffixed);
        assert_eq!(PriceTable::default().cost("kimi-k2-5", &usage(1, 1)), None);
    }

    #[test]
    fn merges_models_response() {
        let body = br#"{"object":"list","type":"text","data":[
            {"id":"kimi-k2-5","type":"text","object":"model","owned_by":"venice.ai",
             "model_spec":{"availableContextTokens":256000,"pricing":{
                "input":{"usd":0.6,"diem":0.6},"output":{"usd":3.6,"diem":3.6},
                "cache_input":{"usd":0.2,"diem":0.2},"cache_write":{"usd":0.7,"diem":0.7}}}},
            {"id":"new-model","model_spec":{"pricing":{
                "input":{"usd":"1.25","diem":1.25},"output":{"usd":2,"diem":2}}}},
            {"id":"image-model","type":"image","model_spec":{"pricing":{
                "generation":{"usd":0.01,"diem":0.01}}}},
            {"id":"no-output","model_spec":{"pricing":{"input":{"usd":1}}}},
            {"id":"no-spec"},
            {"id":"","model_spec":{"pricing":{"input":{"usd":1},"output":{"usd":1}}}},
            {"model_spec":{"pricing":{"input":{"usd":1},"output":{"usd":1}}}},
            {"id":"negative","model_spec":{"pricing":{"input":{"usd":-1},"output":{"usd":1}}}},
            {"id":"bad-types","model_spec":{"pricing":{"input":"x","output":[1]}}},
            "garbage", 42, null
        ]}"#;
        let mut t = PriceTable::venice_defaults();
        assert_eq!(t.merge_models_response(body), 2);
        assert_eq!(
            t.get("kimi-k2-5"),
            Some(&ModelPrice {
                input: 0.6,
                output: 3.6,
                cache_input: Some(0.2),
                cache_write: Some(0.7),
            })
        );
        assert_eq!(
            t.get("new-model"),
            Some(&ModelPrice {
                input: 1.25,
                output: 2.0,
                cache_input: None,
                cache_write: None,
            })
        );
        for id in [
            "image-model",
            "no-output",
            "no-spec",
            "negative",
            "bad-types",
        ] {
            assert_eq!(t.get(id), None, "{id}");
        }
        assert_eq!(t.len(), 11);
    }

    #[test]
    fn merge_ignores_bad_cache_prices() {
        let body = br#"{"data":[{"id":"m","model_spec":{"pricing":{
            "input":{"usd":1},"output":{"usd":2},
            "cache_input":{"usd":"NaN"},"cache_write":{"diem":3}}}}]}"#;
        let mut t = PriceTable::default();
        assert_eq!(t.merge_models_response(body), 1);
        let p = t.get("m").unwrap();
        assert_eq!((p.cache_input, p.cache_write), (None, None));
    }

    #[test]
    fn merge_garbage_is_zero_and_harmless() {
        let mut t = PriceTable::venice_defaults();
        let before = t.clone();
        for body in [
            &b""[..],
            b"not json",
            b"null",
            b"[]",
            b"{}",
            b"{\"data\":null}",
            b"{\"data\":{}}",
            b"{\"data\":\"x\"}",
            b"{\"data\":[]}",
            b"{\"data\":[1,2,3]}",
            b"\xff\xfe",
            b"{\"data\":[{\"id\":\"x\",\"model_spec\":{\"pricing\":[1,2]}}]}",
        ] {
            assert_eq!(t.merge_models_response(body), 0);
        }
        assert_eq!(t, before);
    }
}
