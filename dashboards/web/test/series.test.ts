import { describe, expect, it } from "vitest";
import { tokenEvent, tokensPerMinute } from "../src/series";
import type { RequestRecord } from "../src/types";

const NOW = Date.UTC(2026, 10, 24, 12, 0, 0);
const e = (secAgo: number, model: string, prompt: number, completion: number, reasoning = 0, cached = 0) => ({
  t: NOW - secAgo * 1000,
  model,
  prompt,
  completion,
  reasoning,
  cached,
});

describe("tokens per minute", () => {
  it("samples a rolling 60 s sum", () => {
    const s = tokensPerMinute([e(30, "a", 10, 20)], NOW, "model", 5 * 60_000, 5000);
    expect(s.xs.length).toBe(61);
    expect(s.xs[s.xs.length - 1]).toBe(NOW / 1000);
    const ys = s.lines[0].ys;
    expect(s.lines[0].key).toBe("a");
    expect(ys[ys.length - 1]).toBe(30); // still inside the last minute
    expect(ys[ys.length - 7]).toBe(30); // the sample at the event itself (30 s ago)
    expect(ys[ys.length - 8]).toBe(0); // before it
    expect(ys.reduce((a, b) => a + b, 0)).toBe(30 * 7);
  });
  it("leaves the window 60 s after the event", () => {
    const s = tokensPerMinute([e(90, "a", 5, 5)], NOW, "model", 5 * 60_000, 5000);
    expect(s.lines[0].ys[s.xs.length - 1]).toBe(0);
    expect(Math.max(...s.lines[0].ys)).toBe(10);
  });
  it("has one line per model, sorted", () => {
    const s = tokensPerMinute([e(10, "zeta", 1, 1), e(10, "alpha", 2, 2), e(20, "alpha", 1, 0)], NOW, "model");
    expect(s.lines.map((l) => l.key)).toEqual(["alpha", "zeta"]);
    expect(s.lines[0].ys[s.xs.length - 1]).toBe(5);
    expect(s.lines[1].ys[s.xs.length - 1]).toBe(2);
  });
  it("by kind, one line per token kind", () => {
    const s = tokensPerMinute([e(10, "a", 100, 50, 20, 30)], NOW, "kind");
    expect(s.lines.map((l) => l.key)).toEqual(["prompt", "completion", "reasoning", "cached"]);
    expect(s.lines.map((l) => l.ys[s.xs.length - 1])).toEqual([100, 50, 20, 30]);
  });
  it("is empty without events", () => {
    const s = tokensPerMinute([], NOW, "model");
    expect(s.lines).toEqual([]);
    expect(s.xs.length).toBe(181);
  });
});

describe("token events", () => {
  const rec = (usage: RequestRecord["usage"]): RequestRecord => ({
    started_at: NOW - 2000,
    method: "POST",
    path: "/chat/completions",
    model: "kimi-k2-5",
    session_id: "s",
    status: 200,
    outcome: "ok",
    streamed: true,
    usage,
    cost: null,
    error: null,
    latency_ms: 1500,
    ttfb_ms: 150,
    attempts: 1,
    retries: [],
    queue_wait_ms: 0,
    limited: null,
  });
  it("are stamped when the request finished", () => {
    const t = tokenEvent(rec({ prompt_tokens: 12, completion_tokens: 40, total_tokens: 52, cached_tokens: 0, cache_creation_tokens: 0, reasoning_tokens: 10 }));
    expect(t).toEqual({ t: NOW - 500, model: "kimi-k2-5", prompt: 12, completion: 40, reasoning: 10, cached: 0 });
  });
  it("are skipped for requests without usage", () => {
    expect(tokenEvent(rec(null))).toBeNull();
  });
});
