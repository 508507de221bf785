// The tokens/min chart's data: a rolling 60-second sum sampled every `step`, per model or per
// token kind. Pure; unit-tested in test/series.test.ts.

import type { RequestRecord } from "./types";

export type Grouping = "model" | "kind";

/** Tokens of one finished request, at the time it finished. */
export interface TokenEvent {
  t: number;
  model: string;
  prompt: number;
  completion: number;
  reasoning: number;
  cached: number;
}

export const KINDS = ["prompt", "completion", "reasoning", "cached"] as const;

export function tokenEvent(r: RequestRecord): TokenEvent | null {
  const u = r.usage;
  if (!u || (u.total_tokens === 0 && u.prompt_tokens === 0 && u.completion_tokens === 0)) return null;
  return {
    t: r.started_at + (r.latency_ms || 0),
    model: r.model ?? "unknown",
    prompt: u.prompt_tokens,
    completion: u.completion_tokens,
    reasoning: u.reasoning_tokens,
    cached: u.cached_tokens,
  };
}

export interface Series {
  /** Sample times, Unix seconds (uPlot's x unit). */
  xs: number[];
  /** One line per key: tokens in the 60 s before each sample. */
  lines: { key: string; ys: number[] }[];
}

/**
 * Rolling tokens per minute from `now - spanMs` to `now`, one sample per `stepMs`. By model the
 * value is prompt + completion tokens; by kind, one line per token kind (reasoning and cached
 * are parts of completion and prompt, shown for what they are).
 */
export function tokensPerMinute(
  events: readonly TokenEvent[],
  now: number,
  grouping: Grouping,
  spanMs = 15 * 60_000,
  stepMs = 5_000,
): Series {
  const end = Math.ceil(now / stepMs) * stepMs;
  const start = end - spanMs;
  const n = Math.floor(spanMs / stepMs) + 1;
  const xs: number[] = [];
  for (let i = 0; i < n; i++) xs.push((start + i * stepMs) / 1000);

  const keys: string[] =
    grouping === "kind" ? [...KINDS] : [...new Set(events.filter((e) => e.t > start - 60_000).map((e) => e.model))].sort();
  const lines = keys.map((key) => ({ key, ys: new Array<number>(n).fill(0) }));
  const index = new Map(keys.map((k, i) => [k, i]));

  for (const e of events) {
    // A sample at x counts the events in (x - 60 s, x].
    const first = Math.max(0, Math.ceil((e.t - start) / stepMs));
    const last = Math.min(n - 1, Math.floor((e.t + 60_000 - 1 - start) / stepMs));
    if (first > last) continue;
    if (grouping === "model") {
      const line = lines[index.get(e.model)!];
      if (!line) continue;
      const v = e.prompt + e.completion;
      for (let i = first; i <= last; i++) line.ys[i] += v;
    } else {
      const vals = [e.prompt, e.completion, e.reasoning, e.cached];
      for (let k = 0; k < KINDS.length; k++) {
        if (!vals[k]) continue;
        for (let i = first; i <= last; i++) lines[k].ys[i] += vals[k];
      }
    }
  }
  return { xs, lines };
}
