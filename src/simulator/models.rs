//! The simulated model catalog (ids, names, prices per the Venice facts §5), model-id
//! resolution (`<model>:<feature>=<value>` suffixes) and the read-only metadata
//! endpoints built on it: `GET /models` and `GET /api_keys/rate_limits` (live
//! balances, next DIEM epoch at 00:00 UTC, per-model RPM/TPM, shape of facts §1).

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{json, Value};

use super::faults;
use super::respond;
use super::SharedState;

/// What a model is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelKind {
    Text,
    Embedding,
}

impl ModelKind {
    fn as_str(self) -> &'static str {
        match self {
            ModelKind::Text => "text",
            ModelKind::Embedding => "embedding",
        }
    }
}

/// One simulated model. Prices are USD (= DIEM) per 1M tokens.
#[derive(Debug, Clone, Copy)]
pub struct Model {
    pub id: &'static str,
    pub name: &'static str,
    pub kind: ModelKind,
    pub input: f64,
    pub output: f64,
    /// Cache-read price; `None` means the model does not cache prompts.
    pub cache_read: Option<f64>,
    pub context: u64,
    pub reasoning: bool,
}

impl Model {
    /// USD cost of a request with these token counts.
    pub fn cost_usd(&self, prompt: u64, cached: u64, completion: u64) -> f64 {
        let cached = cached.min(prompt);
        let cache_price = self.cache_read.unwrap_or(self.input);
        let micro = (prompt - cached) as f64 * self.input
            + cached as f64 * cache_price
            + completion as f64 * self.output;
        micro / 1_000_000.0
    }
}

const fn text(
    id: &'static str,
    name: &'static str,
    input: f64,
    output: f64,
    cache_read: Option<f64>,
    context: u64,
    reasoning: bool,
) -> Model {
    Model {
        id,
        name,
        kind: ModelKind::Text,
        input,
        output,
        cache_read,
        context,
        reasoning,
    }
}

/// Every model the simulator knows.
pub const MODELS: &[Model] = &[
    text(
        "zai-org-glm-5-1",
        "GLM 5.1",
        1.54,
        4.84,
        Some(0.29),
        200_000,
        false,
    ),
    text(
        "kimi-k2-5",
        "Kimi K2.5",
        0.56,
        3.50,
        Some(0.22),
        256_000,
        true,
    ),
    text(
        "minimax-m25",
        "MiniMax M2.5",
        0.27,
        0.95,
        Some(0.03),
        198_000,
        false,
    ),
    text(
        "qwen3-coder-480b-a35b-instruct-turbo",
        "Qwen 3 Coder 480B Turbo",
        0.35,
        1.50,
        Some(0.04),
        256_000,
        false,
    ),
    text(
        "deepseek-v4-flash",
        "DeepSeek V4 Flash",
        0.14,
        0.28,
        Some(0.03),
        1_000_000,
        false,
    ),
    text(
        "llama-3.3-70b",
        "Llama 3.3 70B",
        0.70,
        2.80,
        None,
        128_000,
        false,
    ),
    text(
        "openai-gpt-oss-120b",
        "GPT OSS 120B",
        0.07,
        0.30,
        None,
        128_000,
        true,
    ),
    text(
        "venice-uncensored-1-2",
        "Venice Uncensored 1.2",
        0.20,
        0.90,
        None,
        128_000,
        false,
    ),
    Model {
        id: "text-embedding-bge-m3",
        name: "BGE-M3",
        kind: ModelKind::Embedding,
        input: 0.15,
        output: 0.60,
        cache_read: None,
        context: 8_192,
        reasoning: false,
    },
];

/// A model id as requested: the catalog entry plus any `:k=v&k2=v2` feature suffix.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub model: &'static Model,
    pub features: Vec<(String, String)>,
}

impl Resolved {
    /// The value of a feature-suffix key, if given.
    pub fn feature(&self, key: &str) -> Option<&str> {
        self.features
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Resolves a requested model id (with an optional feature suffix) of the given kind.
pub fn resolve(requested: &str, kind: ModelKind) -> Option<Resolved> {
    let (base, suffix) = match requested.split_once(':') {
        Some((base, suffix)) => (base, suffix),
        None => (requested, ""),
    };
    let model = MODELS.iter().find(|m| m.id == base && m.kind == kind)?;
    let features = suffix
        .split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (kv.to_string(), String::new()),
        })
        .collect();
    Some(Resolved { model, features })
}

fn price(usd: f64) -> Value {
    json!({ "usd": usd, "diem": usd })
}

fn describe(m: &Model) -> Value {
    let mut pricing = json!({ "input": price(m.input), "output": price(m.output) });
    if let Some(cache) = m.cache_read {
        pricing["cache_input"] = price(cache);
    }
    json!({
        "id": m.id,
        "object": "model",
        "type": m.kind.as_str(),
        "created": 1_735_689_600u64,
        "owned_by": "venice.ai",
        "model_spec": {
            "name": m.name,
            "pricing": pricing,
            "availableContextTokens": m.context,
            "capabilities": {
                "supportsReasoning": m.reasoning,
                "supportsFunctionCalling": m.kind == ModelKind::Text,
                "supportsResponseSchema": m.kind == ModelKind::Text,
                "optimizedForCode": m.id.contains("coder"),
            },
            "offline": false,
        },
    })
}

#[derive(Debug, Deserialize)]
pub struct ModelsQuery {
    #[serde(rename = "type")]
    kind: Option<String>,
}

/// `GET /models[?type=text|embedding|all]`. Like Venice, no `type` means `text`.
pub async fn list(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Query(query): Query<ModelsQuery>,
) -> Response {
    let wanted = query.kind.unwrap_or_else(|| "text".to_string());
    let data: Vec<Value> = MODELS
        .iter()
        .filter(|m| wanted == "all" || m.kind.as_str() == wanted)
        .map(describe)
        .collect();
    let full = json!({ "object": "list", "type": wanted, "data": data }).to_string();
    faults::json_with_fault(full.into(), state.faults.take(&headers))
}

/// Civil `(year, month, day)` of a day number since 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// ISO 8601 (`YYYY-MM-DDT00:00:00.000Z`) of the midnight starting UTC day `day`.
pub fn midnight_iso(day: u64) -> String {
    let (y, m, d) = civil_from_days(i64::try_from(day).unwrap_or(0));
    format!("{y:04}-{m:02}-{d:02}T00:00:00.000Z")
}

/// The `GET /api_keys/rate_limits` handler.
pub async fn rate_limits(State(state): State<SharedState>, headers: HeaderMap) -> Response {
    let today = respond::utc_day();
    let (usd, diem) = state.account.lock().balances(today);
    let (rpm, tpm) = (state.config.rpm, state.config.tpm);
    let limits: Vec<Value> = MODELS
        .iter()
        .map(|m| {
            json!({
                "apiModelId": m.id,
                "rateLimits": [
                    { "type": "RPM", "amount": rpm },
                    { "type": "TPM", "amount": tpm },
                ],
            })
        })
        .collect();
    let body = json!({
        "data": {
            "accessPermitted": usd > 0.0 || diem > 0.0,
            "apiTier": { "id": "paid", "isCharged": true },
            "balances": { "USD": usd, "DIEM": diem, "BUNDLED_CREDITS": 0 },
            "keyExpiration": null,
            "nextEpochBegins": midnight_iso(today + 1),
            "rateLimits": limits,
        }
    });
    faults::json_with_fault(body.to_string().into(), state.faults.take(&headers))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_suffixes_and_kinds() {
        let r = resolve(
            "kimi-k2-5:disable_thinking=true&enable_web_search=on",
            ModelKind::Text,
        )
        .expect("known");
        assert_eq!(r.model.id, "kimi-k2-5");
        assert_eq!(r.feature("disable_thinking"), Some("true"));
        assert!(resolve("kimi-k2-5", ModelKind::Embedding).is_none());
        assert!(resolve("nope", ModelKind::Text).is_none());
        assert!(resolve("text-embedding-bge-m3", ModelKind::Embedding).is_some());
    }

    #[test]
    fn cost_uses_cache_price() {
        let m = resolve("kimi-k2-5", ModelKind::Text).expect("known").model;
        let c = m.cost_usd(1_000_000, 500_000, 1_000_000);
        assert!((c - (0.28 + 0.11 + 3.5)).abs() < 1e-9);
    }

    #[test]
    fn formats_utc_midnights() {
        assert_eq!(midnight_iso(0), "1970-01-01T00:00:00.000Z");
        // 2026-04-21 is day 20_564.
        assert_eq!(midnight_iso(20_564), "2026-04-21T00:00:00.000Z");
        // Leap day.
        assert_eq!(midnight_iso(19_782), "2024-02-29T00:00:00.000Z");
        assert_eq!(midnight_iso(19_783), "2024-03-01T00:00:00.000Z");
    }
}
