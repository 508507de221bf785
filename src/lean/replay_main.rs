//! `lean-replay`: a stand-in for lean-lsp-mcp 0.32.0 that serves answers recorded from the real
//! server, for the tests of `sidepanel::lean` (`tests/lean_replay.rs`). Not part of the gateway.
//!
//! It speaks MCP over stdio like the real one (one JSON-RPC message per line): `initialize`
//! (echoes a known protocol version, else 2025-11-25), `tools/list` (the recorded list),
//! `tools/call` (the recorded response for the same tool and arguments; a call never recorded
//! gets an `isError` result shaped like the real server's), `ping`.
//!
//! Environment:
//! - `LEAN_REPLAY_FIXTURES`: directory holding `tools_list.json` and `recorded_tool_calls.jsonl`.
//! - `LEAN_REPLAY_LOG`: file to which one JSON line is appended per process start
//!   (`{"event":"start","pid":…}`) and per tool call (`{"event":"call","name":…,"arguments":…}`).
//! - `LEAN_REPLAY_CONTROL`: file read before each `tools/call`; its first line says what to do:
//!   `crash` (exit 3 without answering), `hang` (never answer), `garbage` (first write junk: a
//!   non-JSON line, a 17 MiB line, a JSON array, an answer to an unknown id), all three removing
//!   the file first so the restarted server behaves; `slow <ms>` (answer late), `error` (answer
//!   with the recorded `isError` result, or the real "no lake" error) and `rpc-error` (a JSON-RPC
//!   error instead of a result) stay in force until the file changes.
//! - `LEAN_REPLAY_TOOLS`: comma-separated tool names to list instead of the recorded ones.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

const SPOKEN: [&str; 4] = ["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];

/// Recorded `result`s by canonical call key, in recording order.
struct Recordings {
    tools: Value,
    calls: HashMap<String, Vec<Value>>,
}

fn main() {
    let fixtures = std::env::var_os("LEAN_REPLAY_FIXTURES").map(PathBuf::from);
    let log = std::env::var_os("LEAN_REPLAY_LOG").map(PathBuf::from);
    let control = std::env::var_os("LEAN_REPLAY_CONTROL").map(PathBuf::from);
    let rec = match fixtures.as_deref().map(load) {
        Some(Ok(r)) => r,
        Some(Err(e)) => {
            eprintln!("lean-replay: cannot load fixtures: {e}");
            std::process::exit(2);
        }
        None => {
            eprintln!("lean-replay: LEAN_REPLAY_FIXTURES is not set");
            std::process::exit(2);
        }
    };
    append(&log, &json!({"event": "start", "pid": std::process::id()}));
    eprintln!("lean-replay: started");

    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        let Ok(msg) = serde_json::from_str::<Value>(&line) else {
            eprintln!("lean-replay: unparsable line ignored");
            continue;
        };
        let Some(id) = msg.get("id").cloned() else {
            continue; // notifications/initialized and other notifications
        };
        let method = msg.get("method").and_then(Value::as_str).unwrap_or("");
        let result = match method {
            "initialize" => initialize(&msg),
            "ping" => json!({}),
            "tools/list" => tools(&rec),
            "tools/call" => {
                let name = msg
                    .pointer("/params/name")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let args = msg
                    .pointer("/params/arguments")
                    .cloned()
                    .unwrap_or(json!({}));
                // Read the order first, log the call, then obey: once a call is in the log, a
                // test may change the control file without racing this call.
                let order = order(control.as_deref());
                append(
                    &log,
                    &json!({"event": "call", "name": name, "arguments": args}),
                );
                if let Order::RpcError = order {
                    let error = json!({"code": -32602, "message": "Invalid params (lean-replay was told to fail)"});
                    send(&json!({"jsonrpc": "2.0", "id": id, "error": error}));
                    continue;
                }
                let error_mode = obey(&order, &id);
                call(&rec, name, &args, error_mode)
            }
            other => {
                let msg = format!("Method not found: {other}");
                send(
                    &json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32601, "message": msg}}),
                );
                continue;
            }
        };
        send(&json!({"jsonrpc": "2.0", "id": id, "result": result}));
    }
}

fn load(dir: &Path) -> Result<Recordings, String> {
    let read =
        |name: &str| std::fs::read_to_string(dir.join(name)).map_err(|e| format!("{name}: {e}"));
    let tools: Value =
        serde_json::from_str(&read("tools_list.json")?).map_err(|e| e.to_string())?;
    let mut calls: HashMap<String, Vec<Value>> = HashMap::new();
    for (n, line) in read("recorded_tool_calls.jsonl")?.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let rec: Value = serde_json::from_str(line).map_err(|e| format!("line {}: {e}", n + 1))?;
        let (Some(params), Some(result)) = (
            rec.pointer("/request/params"),
            rec.pointer("/response/result"),
        ) else {
            continue;
        };
        let name = params.get("name").and_then(Value::as_str).unwrap_or("");
        let args = params.get("arguments").cloned().unwrap_or(json!({}));
        calls
            .entry(key(name, &args))
            .or_default()
            .push(result.clone());
    }
    Ok(Recordings { tools, calls })
}

/// `name` plus the arguments with object keys sorted, so argument order never matters.
fn key(name: &str, args: &Value) -> String {
    fn canon(v: &Value) -> String {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                let parts: Vec<String> = keys
                    .into_iter()
                    .map(|k| format!("{}:{}", Value::String(k.clone()), canon(&m[k])))
                    .collect();
                format!("{{{}}}", parts.join(","))
            }
            Value::Array(a) => format!("[{}]", a.iter().map(canon).collect::<Vec<_>>().join(",")),
            other => other.to_string(),
        }
    }
    format!("{name} {}", canon(args))
}

fn initialize(msg: &Value) -> Value {
    let asked = msg
        .pointer("/params/protocolVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    let version = if SPOKEN.contains(&asked) {
        asked
    } else {
        SPOKEN[0]
    };
    json!({
        "protocolVersion": version,
        "capabilities": {"experimental": {}, "prompts": {"listChanged": false},
                         "resources": {"listChanged": false, "subscribe": false},
                         "tools": {"listChanged": false}},
        "serverInfo": {"name": "Lean LSP", "version": "0.32.0"},
        "instructions": "lean-replay: recorded answers of lean-lsp-mcp 0.32.0"
    })
}

fn tools(rec: &Recordings) -> Value {
    match std::env::var("LEAN_REPLAY_TOOLS") {
        Ok(names) => {
            let tools: Vec<Value> = names
                .split(',')
                .filter(|n| !n.is_empty())
                .map(|n| json!({"name": n, "description": "", "inputSchema": {"type": "object"}}))
                .collect();
            json!({"tools": tools})
        }
        Err(_) => rec.tools.clone(),
    }
}

/// What the control file says (one-shot orders are consumed: the file is removed).
enum Order {
    None,
    Crash,
    Hang,
    Garbage,
    Slow(u64),
    Error,
    RpcError,
}

fn order(control: Option<&Path>) -> Order {
    let Some(path) = control else {
        return Order::None;
    };
    let Ok(text) = std::fs::read_to_string(path) else {
        return Order::None;
    };
    let mut words = text.lines().next().unwrap_or("").split_whitespace();
    let order = match words.next() {
        Some("crash") => Order::Crash,
        Some("hang") => Order::Hang,
        Some("garbage") => Order::Garbage,
        Some("slow") => Order::Slow(words.next().and_then(|w| w.parse().ok()).unwrap_or(1000)),
        Some("error") => Order::Error,
        Some("rpc-error") => Order::RpcError,
        _ => Order::None,
    };
    if matches!(order, Order::Crash | Order::Hang | Order::Garbage) {
        let _ = std::fs::remove_file(path);
    }
    order
}

/// Carries out `order`; returns true when tool errors are asked for.
fn obey(order: &Order, id: &Value) -> bool {
    match order {
        Order::Crash => {
            eprintln!("lean-replay: crashing as told");
            std::process::exit(3);
        }
        Order::Hang => {
            eprintln!("lean-replay: hanging as told");
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
        Order::Garbage => {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(b"this is not json\n\xff\xfe\n[1,2,3]\n");
            let _ = out.write_all(&vec![b'x'; 17 * 1024 * 1024]);
            let _ = out.write_all(b"\n{\"jsonrpc\":\"2.0\",\"id\":999999,\"result\":{}}\n");
            let _ = writeln!(
                out,
                "{}",
                json!({"jsonrpc": "2.0", "id": {"odd": id}, "result": {}})
            );
            let _ = out.flush();
            false
        }
        Order::Slow(ms) => {
            std::thread::sleep(Duration::from_millis(*ms));
            false
        }
        Order::Error => true,
        Order::RpcError | Order::None => false,
    }
}

fn call(rec: &Recordings, name: &str, args: &Value, error_mode: bool) -> Value {
    let recorded = rec.calls.get(&key(name, args));
    let is_error = |r: &&Value| r.get("isError").and_then(Value::as_bool) == Some(true);
    let pick = recorded.and_then(|rs| {
        if error_mode {
            rs.iter().rev().find(is_error)
        } else {
            rs.iter().rev().find(|r| !is_error(r)).or(rs.last())
        }
    });
    match pick {
        Some(r) => r.clone(),
        None if error_mode => tool_error(&format!(
            "Error executing tool {name}: Failed to start Lean language server at '/lean-project': [Errno 2] No such file or directory: 'lake'"
        )),
        None => tool_error(&format!(
            "Error executing tool {name}: lean-replay has no recording for arguments {args}"
        )),
    }
}

fn tool_error(text: &str) -> Value {
    json!({"content": [{"type": "text", "text": text}], "isError": true})
}

fn send(msg: &Value) {
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{msg}").and_then(|()| out.flush()).is_err() {
        std::process::exit(0);
    }
}

fn append(log: &Option<PathBuf>, entry: &Value) {
    let Some(path) = log else { return };
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path);
    if let Ok(mut f) = file {
        let _ = writeln!(f, "{entry}");
    }
}
