//! End-to-end tests of `GET /models`, `GET /api_keys/rate_limits` and
//! `POST /embeddings` response shapes.

use serde_json::{json, Value};

use super::client;
use crate::simulator::{spawn, SimConfig};

#[tokio::test]
async fn models_rate_limits_and_embeddings_shapes() {
    let sim = spawn(SimConfig {
        rpm: 7,
        tpm: 1234,
        ..SimConfig::default()
    })
    .await
    .expect("spawn");
    let get = |path: &str| client().get(format!("{}{path}", sim.base_url())).send();
    let models: Value = get("/models?type=text")
        .await
        .expect("req")
        .json()
        .await
        .expect("json");
    assert_eq!(models["object"], "list");
    let data = models["data"].as_array().expect("data");
    let kimi = data.iter().find(|m| m["id"] == "kimi-k2-5").expect("kimi");
    assert_eq!(kimi["type"], "text");
    assert_eq!(kimi["model_spec"]["pricing"]["input"]["usd"], 0.56);
    assert_eq!(kimi["model_spec"]["pricing"]["cache_input"]["diem"], 0.22);
    assert_eq!(
        kimi["model_spec"]["capabilities"]["supportsReasoning"],
        true
    );
    assert!(data.iter().all(|m| m["type"] == "text"));
    let all: Value = get("/models?type=all")
        .await
        .expect("req")
        .json()
        .await
        .expect("json");
    assert!(all["data"]
        .as_array()
        .expect("data")
        .iter()
        .any(|m| m["id"] == "text-embedding-bge-m3"));

    let limits: Value = get("/api_keys/rate_limits")
        .await
        .expect("req")
        .json()
        .await
        .expect("json");
    let d = &limits["data"];
    assert_eq!(d["accessPermitted"], true);
    assert_eq!(d["balances"]["USD"], 25.0);
    assert_eq!(d["balances"]["DIEM"], 10.0);
    assert!(d["nextEpochBegins"]
        .as_str()
        .expect("epoch")
        .ends_with("T00:00:00.000Z"));
    let glm = d["rateLimits"]
        .as_array()
        .expect("rateLimits")
        .iter()
        .find(|r| r["apiModelId"] == "zai-org-glm-5-1")
        .expect("glm");
    assert_eq!(
        glm["rateLimits"],
        json!([{"type": "RPM", "amount": 7}, {"type": "TPM", "amount": 1234}])
    );

    let embed = |input: Value| {
        client()
            .post(format!("{}/embeddings", sim.base_url()))
            .json(&json!({"model": "text-embedding-bge-m3", "input": input}))
            .send()
    };
    let resp = embed(json!(["hello", "world!"])).await.expect("req");
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("x-ratelimit-remaining-tokens").is_some());
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["data"][1]["index"], 1);
    assert_eq!(
        body["data"][0]["embedding"].as_array().expect("vec").len(),
        8
    );
    assert_eq!(
        body["usage"],
        json!({"prompt_tokens": 4, "total_tokens": 4})
    );
    assert_eq!(embed(json!([1, 2, 3])).await.expect("req").status(), 400);
    sim.shutdown();
}
