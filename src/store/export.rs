//! Exporting one session: JSON Lines (every stored update, one per line, exactly as the hub
//! published it) or a human-readable Markdown summary (totals per model, the requests, the
//! other events).
//!
//! Nothing secret is in the store to begin with — request records carry no headers and the
//! Venice key never reaches the hub — and as a second line of defence every configured secret
//! ([`super::StoreConfig::redact`]) is replaced by `<redacted>` in the output.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::str::FromStr;

use serde_json::Value;

use super::points;
use super::read::SessionSummary;
use crate::config::ApiKey;
use crate::hub::{StateUpdate, UpdateType};
use crate::util::from_epoch_ms;

/// Export format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// One `StateUpdate` JSON object per line.
    Jsonl,
    /// A readable summary.
    Markdown,
}

impl FromStr for ExportFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "jsonl" => Ok(Self::Jsonl),
            "markdown" | "md" => Ok(Self::Markdown),
            other => Err(format!(
                "unknown export format {other:?} (jsonl or markdown)"
            )),
        }
    }
}

/// Renders a session's updates in `format`, with `redact` values removed.
pub fn render(
    session: &SessionSummary,
    updates: &[StateUpdate],
    format: ExportFormat,
    redact: &[ApiKey],
) -> String {
    let text = match format {
        ExportFormat::Jsonl => jsonl(updates),
        ExportFormat::Markdown => markdown(session, updates),
    };
    redact_all(text, redact)
}

fn redact_all(mut text: String, redact: &[ApiKey]) -> String {
    for key in redact {
        let k = key.expose();
        if !k.is_empty() && text.contains(k) {
            text = text.replace(k, "<redacted>");
        }
    }
    text
}

fn jsonl(updates: &[StateUpdate]) -> String {
    let mut out = String::new();
    for u in updates {
        if let Ok(line) = serde_json::to_string(u) {
            out.push_str(&line);
            out.push('\n');
        }
    }
    out
}

fn time(ms: u64) -> String {
    humantime::format_rfc3339_seconds(from_epoch_ms(ms)).to_string()
}

/// Markdown table cell: no pipes or newlines.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace(['\n', '\r'], " ")
}

#[derive(Default)]
struct Sum {
    requests: u64,
    errors: u64,
    prompt: u64,
    completion: u64,
    total: u64,
    usd: f64,
    diem: f64,
}

impl Sum {
    fn add(&mut self, r: &Value) {
        let n = |v: &Value, k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
        let f = |k: &str| {
            r.get("cost")
                .and_then(|c| c.get(k))
                .and_then(Value::as_f64)
                .unwrap_or(0.0)
        };
        let usage = r.get("usage").unwrap_or(&Value::Null);
        self.requests += 1;
        self.errors += u64::from(r.get("outcome").and_then(Value::as_str) != Some("ok"));
        self.prompt += n(usage, "prompt_tokens");
        self.completion += n(usage, "completion_tokens");
        self.total += n(usage, "total_tokens");
        self.usd += f("usd");
        self.diem += f("diem");
    }

    fn row(&self, name: &str) -> String {
        format!(
            "| {} | {} | {} | {} | {} | {} | {:.6} | {:.6} |\n",
            name,
            self.requests,
            self.errors,
            self.prompt,
            self.completion,
            self.total,
            self.usd,
            self.diem
        )
    }
}

fn markdown(s: &SessionSummary, updates: &[StateUpdate]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Session `{}`\n", cell(&s.id));
    let _ = writeln!(
        out,
        "- From {} to {} (sequences {}–{})",
        time(s.first_timestamp),
        time(s.last_timestamp),
        s.first_sequence,
        s.last_sequence
    );
    let _ = writeln!(
        out,
        "- {} stored updates, {} requests\n",
        s.events, s.requests
    );

    let mut by_model: BTreeMap<String, Sum> = BTreeMap::new();
    let mut all = Sum::default();
    let mut requests = String::new();
    let mut others = String::new();
    for u in updates {
        if u.kind == UpdateType::Usage {
            let payload = u.payload.value();
            let r = payload.get("request").unwrap_or(&Value::Null);
            let model = r.get("model").and_then(Value::as_str).unwrap_or("unknown");
            by_model.entry(model.to_owned()).or_default().add(r);
            all.add(r);
            let mut one = Sum::default();
            one.add(r);
            let status = r
                .get("status")
                .and_then(Value::as_u64)
                .map_or_else(|| "-".to_owned(), |s| s.to_string());
            let latency = r.get("latency_ms").and_then(Value::as_f64).unwrap_or(0.0);
            let _ = writeln!(
                requests,
                "| {} | {} | {} | {} | {} | {} | {:.6} | {:.0} |",
                u.sequence,
                time(u.timestamp),
                cell(model),
                status,
                cell(r.get("outcome").and_then(Value::as_str).unwrap_or("?")),
                one.total,
                one.usd,
                latency
            );
        } else {
            let _ = writeln!(
                others,
                "| {} | {} | {} | {} |",
                u.sequence,
                time(u.timestamp),
                points::type_name(u.kind),
                cell(&points::label(u))
            );
        }
    }

    out.push_str("## Totals\n\n");
    out.push_str(
        "| model | requests | errors | prompt tokens | completion tokens | total tokens | cost USD | cost Diem |\n",
    );
    out.push_str("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
    for (model, sum) in &by_model {
        out.push_str(&sum.row(&cell(model)));
    }
    out.push_str(&all.row("**all**"));

    if !requests.is_empty() {
        out.push_str("\n## Requests\n\n");
        out.push_str("| sequence | time (UTC) | model | status | outcome | tokens | cost USD | latency ms |\n");
        out.push_str("| ---: | --- | --- | ---: | --- | ---: | ---: | ---: |\n");
        out.push_str(&requests);
    }
    if !others.is_empty() {
        out.push_str("\n## Other events\n\n| sequence | time (UTC) | type | event |\n| ---: | --- | --- | --- |\n");
        out.push_str(&others);
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::hub::UpdateSource;

    #[test]
    fn markdown_sums_requests_and_secrets_are_redacted() {
        let summary = SessionSummary {
            id: "ses|1".into(),
            first_sequence: 1,
            last_sequence: 2,
            first_timestamp: 0,
            last_timestamp: 1000,
            events: 2,
            requests: 2,
        };
        let req = |seq, model: &str, tokens, usd| {
            StateUpdate::new(
                UpdateType::Usage,
                0,
                seq,
                json!({"request": {"model": model, "outcome": "ok", "status": 200,
                "usage": {"total_tokens": tokens}, "cost": {"usd": usd, "diem": 0.0},
                "error": {"message": "sk-secret-key leaked"}}}),
                UpdateSource::Venice,
            )
        };
        let updates = [req(1, "a", 10, 0.5), req(2, "b", 5, 0.25)];
        let key = ApiKey::new("sk-secret-key").expect("key");
        let md = render(
            &summary,
            &updates,
            ExportFormat::Markdown,
            std::slice::from_ref(&key),
        );
        assert!(
            md.contains("| **all** | 2 | 0 | 0 | 0 | 15 | 0.750000"),
            "{md}"
        );
        assert!(md.contains("ses\\|1"), "{md}");
        let lines = render(&summary, &updates, ExportFormat::Jsonl, &[key]);
        assert_eq!(lines.lines().count(), 2);
        assert!(!lines.contains("sk-secret-key") && lines.contains("<redacted>"));
        assert_eq!("md".parse::<ExportFormat>(), Ok(ExportFormat::Markdown));
        assert!("pdf".parse::<ExportFormat>().is_err());
    }
}
