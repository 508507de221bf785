import { describe, expect, it } from "vitest";
import { Store } from "../src/store";
import { emptyTotals } from "../src/types";
import type { RequestRecord, State, StateUpdate } from "../src/types";

const NOW = Date.UTC(2026, 10, 24, 12, 0, 0);

function state(seq: number, patch: Partial<State> = {}): State {
  return {
    sequence: seq,
    balance: { diem: 10, usd: 25, vcu: null, observed_at: NOW - 1000, stale: false },
    rate_limits: {},
    models: {},
    sessions: {},
    totals: emptyTotals(),
    upstream: { status: "ok", consecutive_failures: 0, last_ok_at: NOW, last_failure_at: null, last_error: null },
    recent: [],
    proof: {},
    alerts: { diem_below: null, usd_below: null },
    ...patch,
  };
}

function record(i: number, session = "ses_a"): RequestRecord {
  return {
    started_at: NOW - 10_000 + i,
    method: "POST",
    path: "/chat/completions",
    model: "kimi-k2-5",
    session_id: session,
    status: 200,
    outcome: "ok",
    streamed: true,
    usage: { prompt_tokens: 10, completion_tokens: 20, total_tokens: 30, cached_tokens: 0, cache_creation_tokens: 0, reasoning_tokens: 0 },
    cost: { usd: 0, diem: 0.001 },
    error: null,
    latency_ms: 100,
    ttfb_ms: 10,
    attempts: 1,
    retries: [],
    queue_wait_ms: 0,
    limited: null,
  };
}

function usage(seq: number, r: RequestRecord, requests: number): StateUpdate {
  const totals = { ...emptyTotals(), requests, total_tokens: 30 * requests, cost_diem: 0.001 * requests };
  return {
    type: "usage",
    timestamp: NOW,
    sequence: seq,
    source: "venice",
    payload: { request: r, model: r.model, model_totals: totals, session_totals: totals, totals },
  };
}

describe("store", () => {
  it("applies a full state and then newer updates only (last write wins)", () => {
    const s = new Store();
    s.applyFull(state(5), 5, NOW);
    expect(s.applyUpdate({ type: "balance", timestamp: NOW, sequence: 5, source: "venice", payload: { balance: { diem: 1 } } }, NOW)).toBe(false);
    expect(s.state!.balance.diem).toBe(10);
    expect(s.applyUpdate({ type: "balance", timestamp: NOW, sequence: 6, source: "venice", payload: { balance: { ...s.state!.balance, diem: 9.5 } } }, NOW)).toBe(true);
    expect(s.state!.balance.diem).toBe(9.5);
    expect(s.sequence).toBe(6);
  });

  it("applies usage: totals, model, session, log, chart and cost events", () => {
    const s = new Store();
    s.applyFull(state(1), 1, NOW);
    s.applyUpdate(usage(2, record(1), 1), NOW);
    s.applyUpdate(usage(3, record(2), 2), NOW);
    expect(s.state!.totals.requests).toBe(2);
    expect(s.state!.models["kimi-k2-5"].total_tokens).toBe(60);
    expect(s.state!.sessions.ses_a.requests).toBe(2);
    expect(s.state!.sessions.ses_a.models["kimi-k2-5"].requests).toBe(2);
    expect(s.log).toHaveLength(2);
    expect(s.tokenEvents).toHaveLength(2);
    expect(s.costEvents).toHaveLength(2);
    expect(s.state!.recent).toHaveLength(2);
  });

  it("does not count a request twice when a resync repeats it in `recent`", () => {
    const s = new Store();
    s.applyFull(state(1), 1, NOW);
    const r = record(7);
    s.applyUpdate(usage(2, r, 1), NOW);
    s.applyFull(state(2, { recent: [r, record(8)] }), 2, NOW);
    expect(s.log).toHaveLength(2);
    expect(s.tokenEvents).toHaveLength(2);
  });

  it("applies rate limits, health, proof and alerts", () => {
    const s = new Store();
    s.applyFull(state(1), 1, NOW);
    const limits = { requests: { limit: 100, remaining: 99, reset_at: NOW + 60_000 }, tokens: { limit: 1, remaining: 1, reset_at: null }, limit_type: null, observed_at: NOW };
    s.applyUpdate({ type: "rate_limit", timestamp: NOW, sequence: 2, source: "venice", payload: { model: "m", limits } }, NOW);
    s.applyUpdate({ type: "health", timestamp: NOW, sequence: 3, source: "gateway", payload: { upstream: { ...s.state!.upstream, status: "degraded" } } }, NOW);
    s.applyUpdate({ type: "proof", timestamp: NOW, sequence: 4, source: "lean", payload: { file: "A.lean", state: { file: "A.lean" } } }, NOW);
    s.applyUpdate({ type: "alert", timestamp: NOW, sequence: 5, source: "user", payload: { currency: "diem", below: 9, alerts: { diem_below: 9, usd_below: null } } }, NOW);
    expect(s.state!.rate_limits.m.requests.remaining).toBe(99);
    expect(s.state!.upstream.status).toBe("degraded");
    expect(Object.keys(s.state!.proof)).toEqual(["A.lean"]);
    expect(s.state!.alerts.diem_below).toBe(9);
    expect(s.updatedAt.alert).toBe(NOW);
  });

  it("replaces the whole state on a snapshot update (a restore) and says so", () => {
    const s = new Store();
    s.applyFull(state(1), 1, NOW);
    const snap = { ...state(0, { balance: { diem: 3, usd: 4, vcu: null, observed_at: NOW, stale: false } }), restored_from: { sequence: 42, snapshot_id: 7 } };
    s.applyUpdate({ type: "snapshot", timestamp: NOW, sequence: 9, source: "user", payload: snap }, NOW);
    expect(s.state!.balance.diem).toBe(3);
    expect(s.sequence).toBe(9);
    expect(s.notice).toBe("State restored to snapshot 7.");
  });

  it("applies OpenCode session updates (totals and the plugin's view)", () => {
    const s = new Store();
    s.applyFull(state(1), 1, NOW);
    const opencode = { seen: true, title: "Refactor", status: "busy", messages: { user: 1, assistant: 2 }, tool_calls: 5, tool_errors: 0, tools: {}, files_edited: [], errors: 0, last_error: null, title_calls: 1, last_event_at: NOW };
    const totals = { ...emptyTotals(), requests: 3 };
    s.applyUpdate({ type: "session", timestamp: NOW, sequence: 2, source: "opencode", payload: { session: "ses_x", events: ["message.updated"], opencode, totals } }, NOW);
    expect(s.state!.sessions.ses_x.requests).toBe(3);
    expect(s.state!.sessions.ses_x.opencode?.title).toBe("Refactor");
    s.applyUpdate({ type: "session", timestamp: NOW, sequence: 3, source: "opencode", payload: { plugin: { starts: 1 } } }, NOW);
    expect(s.state!.plugin).toEqual({ starts: 1 });
  });

  it("shows a gateway alert while it fires", () => {
    const s = new Store();
    s.applyFull(state(1), 1, NOW);
    s.applyUpdate({ type: "alert", timestamp: NOW, sequence: 2, source: "gateway", payload: { alert: "plugin_silent", firing: true, message: "plugin silent: …" } }, NOW);
    expect(s.gatewayAlert).toBe("plugin silent: …");
    s.applyUpdate({ type: "alert", timestamp: NOW, sequence: 3, source: "gateway", payload: { alert: "plugin_silent", firing: false, message: "back" } }, NOW);
    expect(s.gatewayAlert).toBeNull();
  });

  it("remembers the sequence of each live request (restore points)", () => {
    const s = new Store();
    const early = record(1);
    s.applyFull(state(1, { recent: [early] }), 1, NOW);
    const live = record(2);
    s.applyUpdate(usage(5, live, 2), NOW);
    expect(s.sequenceOf(live)).toBe(5);
    expect(s.sequenceOf(early)).toBeNull();
  });

  it("shows the gateway's totals of the current UTC day, and zero once the day is over", () => {
    const s = new Store();
    const before = Date.UTC(2026, 10, 24, 23, 59, 0);
    const day = Date.UTC(2026, 10, 24);
    s.applyFull(state(1), 1, before);
    expect(s.today(before).requests).toBe(0);
    const u = usage(2, record(1), 4);
    u.payload.today = { day_start_ms: day, totals: { ...emptyTotals(), requests: 3, cost_usd: 0.5 } };
    s.applyUpdate(u, before);
    expect(s.today(before)).toMatchObject({ requests: 3, cost_usd: 0.5 });
    // After 00:00 UTC, until the next request starts the new day, today is empty.
    expect(s.today(Date.UTC(2026, 10, 25, 0, 0, 30)).requests).toBe(0);
  });

  it("notifies listeners once per batch of changes", async () => {
    const s = new Store();
    let calls = 0;
    s.subscribe(() => calls++);
    s.applyFull(state(1), 1, NOW);
    for (let i = 2; i < 100; i++) s.applyUpdate({ type: "balance", timestamp: NOW, sequence: i, source: "venice", payload: { balance: s.state!.balance } }, NOW);
    await new Promise((r) => setTimeout(r, 300));
    expect(calls).toBe(1);
    expect(s.applied).toBe(98);
  });
});

describe("spend window", () => {
  it("starts at the oldest request the first state holds", () => {
    const s = new Store();
    s.applyFull(state(1, { recent: [record(1), record(2)] }), 1, NOW);
    expect(s.observedSince).toBe(NOW - 10_000 + 1);
    const fresh = new Store();
    fresh.applyFull(state(1), 1, NOW);
    expect(fresh.observedSince).toBe(NOW);
  });
});
