//! Reading lean-lsp-mcp 0.32.0 tool outputs into proof types.
//!
//! Owns the knowledge of the tools' JSON shapes (`lean_diagnostic_messages` wrapped in
//! `{"result": …}`, `lean_goal` with text or structured goals, `lean_code_actions`) and of
//! Lean's goal rendering (`case x`, `a b : T`, `⊢ target`). Everything is read leniently and
//! bounded: a missing field is skipped, never a panic, and counts and texts are capped.

use lsp_types::DiagnosticSeverity;
use serde_json::Value;

use super::proof::{
    severity, Edit, Goal, Hypothesis, ProofDiagnostic, Suggestion, SuggestionSource,
};

/// Diagnostics kept per file.
const MAX_DIAGNOSTICS: usize = 2000;
/// Goals kept per position, hypotheses per goal, suggestions per answer.
const MAX_GOALS: usize = 64;
const MAX_HYPOTHESES: usize = 256;
const MAX_SUGGESTIONS: usize = 64;
/// Longest text kept from one message or goal.
const MAX_TEXT: usize = 64 * 1024;

/// What `lean_diagnostic_messages` said.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct DiagnosticsReport {
    pub items: Vec<ProofDiagnostic>,
    pub success: Option<bool>,
    pub partial: bool,
    pub timed_out: bool,
    pub still_elaborating: Vec<[u32; 2]>,
}

impl DiagnosticsReport {
    /// Lean had not finished when it answered.
    pub fn unfinished(&self) -> bool {
        self.partial || self.timed_out || !self.still_elaborating.is_empty()
    }
}

/// What `lean_goal` said.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct GoalAnswer {
    pub line_context: Option<String>,
    pub status: Option<String>,
    pub goals: Option<Vec<Goal>>,
    pub before: Option<Vec<Goal>>,
    pub after: Option<Vec<Goal>>,
}

fn text(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(bounded)
}

fn bounded(s: &str) -> String {
    if s.len() <= MAX_TEXT {
        return s.to_owned();
    }
    let mut end = MAX_TEXT;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

fn number(v: &Value, key: &str) -> Option<u32> {
    v.get(key)
        .and_then(Value::as_u64)
        .and_then(|n| u32::try_from(n).ok())
}

/// Reads a `lean_diagnostic_messages` output (wrapped or not).
pub(super) fn diagnostics(output: &Value) -> Result<DiagnosticsReport, String> {
    let r = output
        .get("result")
        .filter(|r| r.is_object())
        .unwrap_or(output);
    let Some(items) = r.get("items").and_then(Value::as_array) else {
        return Err("lean_diagnostic_messages returned no items list".to_owned());
    };
    let mut out: Vec<ProofDiagnostic> = items.iter().filter_map(diagnostic).collect();
    out.sort_by_key(|d| (d.line, d.column, rank(d.severity_code)));
    out.truncate(MAX_DIAGNOSTICS);
    let still = r
        .get("still_elaborating_lines")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|pair| {
            let p = pair.as_array()?;
            let n = |i: usize| p.get(i)?.as_u64().and_then(|n| u32::try_from(n).ok());
            Some([n(0)?, n(1)?])
        })
        .take(MAX_DIAGNOSTICS)
        .collect();
    let flag = |k: &str| r.get(k).and_then(Value::as_bool);
    Ok(DiagnosticsReport {
        items: out,
        success: flag("success"),
        partial: flag("partial").unwrap_or(false),
        timed_out: flag("timed_out").unwrap_or(false),
        still_elaborating: still,
    })
}

fn rank(s: DiagnosticSeverity) -> u8 {
    match s {
        DiagnosticSeverity::ERROR => 1,
        DiagnosticSeverity::WARNING => 2,
        DiagnosticSeverity::INFORMATION => 3,
        _ => 4,
    }
}

fn diagnostic(v: &Value) -> Option<ProofDiagnostic> {
    let (code, label) = severity(v.get("severity").and_then(Value::as_str).unwrap_or("info"));
    Some(ProofDiagnostic {
        severity: label.to_owned(),
        severity_code: code,
        line: number(v, "line")?,
        column: number(v, "column").unwrap_or(1),
        message: text(v, "message").unwrap_or_default(),
        category: text(v, "category"),
        tags: v
            .get("lean_tags")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .take(8)
            .map(str::to_owned)
            .collect(),
        hint: text(v, "hint"),
    })
}

/// Reads a `lean_goal` output.
pub(super) fn goal_answer(output: &Value) -> GoalAnswer {
    let list = |key: &str| {
        output.get(key).and_then(Value::as_array).map(|goals| {
            goals
                .iter()
                .filter_map(goal_value)
                .take(MAX_GOALS)
                .collect()
        })
    };
    GoalAnswer {
        line_context: text(output, "line_context"),
        status: text(output, "status"),
        goals: list("goals"),
        before: list("goals_before"),
        after: list("goals_after"),
    }
}

/// A goal as text (`"a : T\n⊢ P"`) or structured (`{context, goal, pretty}`).
fn goal_value(v: &Value) -> Option<Goal> {
    match v {
        Value::String(s) => Some(goal_text(s)),
        Value::Object(_) => {
            let pretty = text(v, "pretty");
            let parsed = pretty.as_deref().map(goal_text);
            let hypotheses = v
                .get("context")
                .and_then(Value::as_array)
                .map(|ctx| {
                    ctx.iter()
                        .filter_map(|h| {
                            Some(Hypothesis {
                                names: vec![text(h, "name")?],
                                ty: text(h, "type").unwrap_or_default(),
                            })
                        })
                        .take(MAX_HYPOTHESES)
                        .collect()
                })
                .or_else(|| parsed.as_ref().map(|g| g.hypotheses.clone()))
                .unwrap_or_default();
            let target = text(v, "goal")
                .or_else(|| parsed.as_ref().map(|g| g.target.clone()))
                .unwrap_or_default();
            Some(Goal {
                case: parsed.and_then(|g| g.case),
                hypotheses,
                pretty: pretty.unwrap_or_else(|| format!("⊢ {target}")),
                target,
            })
        }
        _ => None,
    }
}

/// Parses Lean's rendering of one goal: an optional `case` line, hypotheses `names : type`
/// (continuation lines are indented), then `⊢ target` (which may span lines).
pub(super) fn goal_text(s: &str) -> Goal {
    let s = bounded(s);
    let mut case = None;
    let mut hypotheses: Vec<Hypothesis> = Vec::new();
    let mut target: Option<String> = None;
    for (i, line) in s.lines().enumerate() {
        if let Some(t) = target.as_mut() {
            t.push('\n');
            t.push_str(line);
        } else if let Some(rest) = line.strip_prefix('⊢') {
            target = Some(rest.trim_start().to_owned());
        } else if let (0, Some(name)) = (i, line.strip_prefix("case ")) {
            case = Some(name.trim().to_owned());
        } else if line.starts_with(char::is_whitespace) && !hypotheses.is_empty() {
            if let Some(h) = hypotheses.last_mut() {
                h.ty.push('\n');
                h.ty.push_str(line);
            }
        } else if let Some((names, ty)) = line.split_once(" : ") {
            if hypotheses.len() < MAX_HYPOTHESES {
                hypotheses.push(Hypothesis {
                    names: names.split_whitespace().map(str::to_owned).collect(),
                    ty: ty.to_owned(),
                });
            }
        }
    }
    Goal {
        case,
        hypotheses,
        target: target.unwrap_or_default(),
        pretty: s,
    }
}

/// The goals listed in an "unsolved goals" message (goals are separated by blank lines).
pub(super) fn goals_in_message(message: &str) -> Vec<Goal> {
    let Some(rest) = message.strip_prefix("unsolved goals") else {
        return Vec::new();
    };
    rest.trim_start_matches('\n')
        .split("\n\n")
        .filter(|g| g.contains('⊢'))
        .take(MAX_GOALS)
        .map(goal_text)
        .collect()
}

/// A "Try this: X" diagnostic as a suggestion.
pub(super) fn try_this(d: &ProofDiagnostic) -> Option<Suggestion> {
    let at = d.message.find("Try this:")?;
    if d.category.as_deref() != Some("suggestion") && at != 0 {
        return None;
    }
    let text = d.message[at + "Try this:".len()..].trim().to_owned();
    Some(Suggestion {
        source: SuggestionSource::Diagnostic,
        line: d.line,
        column: Some(d.column),
        title: d.message.lines().next().unwrap_or_default().to_owned(),
        text: (!text.is_empty()).then_some(text),
        preferred: false,
        edits: Vec::new(),
    })
}

/// Reads a `lean_code_actions` output for `line`.
pub(super) fn code_actions(output: &Value, line: u32) -> Vec<Suggestion> {
    output
        .get("actions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .take(MAX_SUGGESTIONS)
        .filter_map(|a| {
            let title = text(a, "title")?;
            let edits: Vec<Edit> = a
                .get("edits")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .take(MAX_SUGGESTIONS)
                .filter_map(|e| {
                    Some(Edit {
                        new_text: text(e, "new_text")?,
                        start_line: number(e, "start_line")?,
                        start_column: number(e, "start_column")?,
                        end_line: number(e, "end_line")?,
                        end_column: number(e, "end_column")?,
                    })
                })
                .collect();
            let text = title
                .strip_prefix("Try this:")
                .map(|t| t.trim().to_owned())
                .or_else(|| edits.first().map(|e| e.new_text.clone()));
            Some(Suggestion {
                source: SuggestionSource::CodeAction,
                line: edits.first().map_or(line, |e| e.start_line),
                column: edits.first().map(|e| e.start_column),
                title,
                text,
                preferred: a
                    .get("is_preferred")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
                edits,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn goal_text_splits_case_hypotheses_and_target() {
        let g = goal_text("case left\na b : MyNat\nh : MyEq a\n  b\n⊢ MyEq a a ∧\n  True");
        assert_eq!(g.case.as_deref(), Some("left"));
        assert_eq!(g.hypotheses.len(), 2);
        assert_eq!(g.hypotheses[0].names, vec!["a", "b"]);
        assert_eq!(g.hypotheses[0].ty, "MyNat");
        assert_eq!(g.hypotheses[1].ty, "MyEq a\n  b");
        assert_eq!(g.target, "MyEq a a ∧\n  True");
    }

    #[test]
    fn structured_goals_keep_context() {
        let a = goal_answer(
            &json!({"line_context": "  exact MyEq.refl", "goals": [{"context": [{"name": "a", "type": "MyNat"}], "goal": "MyEq a a", "status": "open", "pretty": "a : MyNat\n⊢ MyEq a a"}], "goals_before": null, "goals_after": null, "status": "goals"}),
        );
        let goals = a.goals.expect("goals");
        assert_eq!(goals[0].hypotheses[0].names, vec!["a"]);
        assert_eq!(goals[0].target, "MyEq a a");
        assert_eq!(a.status.as_deref(), Some("goals"));
        assert!(a.before.is_none());
    }

    #[test]
    fn diagnostics_are_unwrapped_sorted_and_tolerant() {
        let v = json!({"result": {"partial": false, "still_elaborating_lines": [[3, 4]], "success": false, "timed_out": false, "items": [
            {"severity": "error", "message": "b", "line": 14, "column": 4, "lean_tags": null, "category": "diagnostic", "hint": null},
            {"severity": "error", "message": "unsolved goals\na : MyNat\n⊢ MyEq a a", "line": 13, "column": 38, "lean_tags": ["unsolvedGoals"]},
            {"severity": "error", "message": "no line"},
            "garbage"
        ]}});
        let r = diagnostics(&v).expect("parses");
        assert_eq!(r.items.len(), 2);
        assert_eq!(r.items[0].line, 13);
        assert!(r.items[0].has_unsolved_goals());
        assert_eq!(r.still_elaborating, vec![[3, 4]]);
        assert!(r.unfinished());
        assert!(diagnostics(&json!({"result": {}})).is_err());
    }

    #[test]
    fn unsolved_goal_messages_and_try_this() {
        let goals = goals_in_message("unsolved goals\ncase a\n⊢ True\n\ncase b\nx : Nat\n⊢ x = x");
        assert_eq!(goals.len(), 2);
        assert_eq!(goals[1].hypotheses[0].names, vec!["x"]);
        let d = diagnostics(&json!({"items": [{"severity": "info", "message": "Try this: exact MyEq.refl", "line": 14, "column": 3, "category": "suggestion"}]}))
            .expect("parses");
        let s = try_this(&d.items[0]).expect("a suggestion");
        assert_eq!(s.text.as_deref(), Some("exact MyEq.refl"));
    }

    #[test]
    fn code_actions_carry_edits() {
        let v = json!({"actions": [{"title": "Try this: exact MyEq.refl", "is_preferred": true, "edits": [{"new_text": "exact MyEq.refl", "start_line": 14, "start_column": 3, "end_line": 14, "end_column": 18}]}, {"no": "title"}]});
        let s = code_actions(&v, 14);
        assert_eq!(s.len(), 1);
        assert!(s[0].preferred);
        assert_eq!(s[0].edits[0].end_column, 18);
        assert_eq!(s[0].text.as_deref(), Some("exact MyEq.refl"));
    }
}
