//! Checking one file: the tool calls of one check, and their results as a [`ProofState`].
//!
//! Owns the flow: `lean_diagnostic_messages`; then `lean_goal` at each "unsolved goals" error
//! (line and column) and at the line of interest (whole line: goals before and after); then
//! suggestions from "Try this" diagnostics and `lean_code_actions` at their lines and the line
//! of interest. A tool error is kept in the state; only a hung or vanished server aborts the
//! check (the supervisor restarts it). Calls per check are bounded.

use serde_json::json;

use super::client::{CallError, McpClient, McpError};
use super::parse::{self, DiagnosticsReport};
use super::proof::{
    Counts, ErrorKind, FileStatus, GoalReason, GoalsAt, ProofError, ProofState, ServerStatus,
    Suggestion,
};
use super::schedule::Job;

/// `lean_goal` calls at unsolved-goal positions per check.
const MAX_GOAL_CALLS: usize = 8;
/// `lean_code_actions` calls per check.
const MAX_ACTION_CALLS: usize = 8;

/// The results of one check.
#[derive(Debug)]
pub(super) struct Report {
    pub diagnostics: Result<DiagnosticsReport, ProofError>,
    pub goals: Vec<GoalsAt>,
    pub suggestions: Vec<Suggestion>,
}

impl Report {
    pub(super) fn succeeded(&self) -> bool {
        self.diagnostics.is_ok()
    }
}

fn proof_error(e: &CallError) -> ProofError {
    match e {
        CallError::Tool(message) => ProofError {
            kind: ErrorKind::Tool,
            message: message.clone(),
        },
        CallError::Mcp(e) => ProofError {
            kind: ErrorKind::Protocol,
            message: e.to_string(),
        },
    }
}

/// A fatal error ends the check; anything else is the tool's or the exchange's own failure.
fn fatal(e: &CallError) -> Option<McpError> {
    match e {
        CallError::Mcp(m) if m.is_fatal() => Some(m.clone()),
        _ => None,
    }
}

/// Runs the tool calls for `job`. `Err` only when the server hung or went away.
pub(super) async fn run(client: &McpClient, job: &Job) -> Result<Report, McpError> {
    let file = job.file.as_str();
    let diag = match client
        .call_tool("lean_diagnostic_messages", json!({"file_path": file}))
        .await
    {
        Ok(v) => parse::diagnostics(&v).map_err(|message| ProofError {
            kind: ErrorKind::Protocol,
            message,
        }),
        Err(e) => {
            if let Some(f) = fatal(&e) {
                return Err(f);
            }
            Err(proof_error(&e))
        }
    };
    let Ok(report) = &diag else {
        return Ok(Report {
            diagnostics: diag,
            goals: Vec::new(),
            suggestions: Vec::new(),
        });
    };

    let mut goals = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let unsolved = report
        .items
        .iter()
        .filter(|d| d.has_unsolved_goals() && seen.insert((d.line, d.column)))
        .take(MAX_GOAL_CALLS);
    for d in unsolved {
        let args = json!({"file_path": file, "line": d.line, "column": d.column});
        let mut at = goals_at(
            client,
            args,
            GoalReason::UnsolvedGoals,
            d.line,
            Some(d.column),
        )
        .await?;
        if at.goals.is_empty() && at.error.is_some() {
            at.goals = parse::goals_in_message(&d.message);
        }
        goals.push(at);
    }
    if let Some(line) = job.line {
        let args = json!({"file_path": file, "line": line});
        goals.push(goals_at(client, args, GoalReason::Cursor, line, None).await?);
    }

    let mut suggestions: Vec<Suggestion> =
        report.items.iter().filter_map(parse::try_this).collect();
    let mut lines: Vec<u32> = suggestions.iter().map(|s| s.line).collect();
    lines.extend(job.line);
    lines.sort_unstable();
    lines.dedup();
    for line in lines.into_iter().take(MAX_ACTION_CALLS) {
        let args = json!({"file_path": file, "line": line});
        match client.call_tool("lean_code_actions", args).await {
            Ok(v) => suggestions.extend(parse::code_actions(&v, line)),
            Err(e) => {
                if let Some(f) = fatal(&e) {
                    return Err(f);
                }
                tracing::warn!(file, line, error = %e, "lean_code_actions failed; no actions for this line");
            }
        }
    }
    Ok(Report {
        diagnostics: diag,
        goals,
        suggestions,
    })
}

async fn goals_at(
    client: &McpClient,
    args: serde_json::Value,
    reason: GoalReason,
    line: u32,
    column: Option<u32>,
) -> Result<GoalsAt, McpError> {
    let mut at = GoalsAt {
        reason,
        line,
        column,
        line_context: None,
        status: None,
        goals: Vec::new(),
        goals_after: None,
        error: None,
    };
    match client.call_tool("lean_goal", args).await {
        Ok(v) => {
            let a = parse::goal_answer(&v);
            at.line_context = a.line_context;
            at.status = a.status;
            if column.is_some() {
                at.goals = a.goals.unwrap_or_default();
            } else {
                at.goals = a.before.unwrap_or_default();
                at.goals_after = a.after;
            }
        }
        Err(e) => {
            if let Some(f) = fatal(&e) {
                return Err(f);
            }
            at.error = Some(proof_error(&e).message);
        }
    }
    Ok(at)
}

/// The state a check's `report` makes of the file's previous state `prev`.
pub(super) fn apply(
    prev: Option<&ProofState>,
    job: &Job,
    report: Report,
    server: &ServerStatus,
    now: u64,
) -> ProofState {
    let mut state = prev.cloned().unwrap_or_else(|| {
        ProofState::empty(
            &job.file,
            job.version,
            FileStatus::Elaborating,
            server.clone(),
            now,
        )
    });
    state.version = job.version;
    state.updated_at = now;
    state.server = server.clone();
    match report.diagnostics {
        Ok(d) => {
            state.status = if d.unfinished() {
                FileStatus::Elaborating
            } else {
                FileStatus::Complete
            };
            state.checked_at = Some(now);
            state.success = d.success;
            state.counts = Counts::of(&d.items);
            state.diagnostics = d.items;
            state.still_elaborating_lines = d.still_elaborating;
            state.goals = report.goals;
            state.suggestions = report.suggestions;
            state.error = None;
        }
        Err(e) => {
            // Keep the last known results; say why they were not refreshed.
            state.status = FileStatus::Error;
            state.error = Some(e);
        }
    }
    state
}

/// The state shown while `job` runs: the last results, marked elaborating.
pub(super) fn elaborating(
    prev: Option<&ProofState>,
    job: &Job,
    server: &ServerStatus,
    now: u64,
) -> ProofState {
    let mut state = prev.cloned().unwrap_or_else(|| {
        ProofState::empty(
            &job.file,
            job.version,
            FileStatus::Elaborating,
            server.clone(),
            now,
        )
    });
    state.version = job.version;
    state.status = FileStatus::Elaborating;
    state.server = server.clone();
    state.updated_at = now;
    state
}
