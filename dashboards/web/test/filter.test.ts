import { describe, expect, it } from "vitest";
import { matches, parseFilter } from "../src/filter";
import type { RequestRecord } from "../src/types";

function rec(p: Partial<RequestRecord>): RequestRecord {
  return {
    started_at: 0,
    method: "POST",
    path: "/chat/completions",
    model: "kimi-k2-5",
    session_id: "ses_demo_refactor",
    status: 200,
    outcome: "ok",
    streamed: true,
    usage: null,
    cost: null,
    error: null,
    latency_ms: 10,
    ttfb_ms: 5,
    attempts: 1,
    retries: [],
    queue_wait_ms: 0,
    limited: null,
    ...p,
  };
}

const ok = rec({});
const limited = rec({ model: "zai-org-glm-5-1", status: 429, outcome: "http_error", session_id: "ses_demo_docs" });
const models = rec({ method: "GET", path: "/models", model: null, session_id: null });

const pick = (f: string) => [ok, limited, models].filter((r) => matches(r, parseFilter(f)));

describe("request filter", () => {
  it("matches everything when empty", () => {
    expect(pick("")).toHaveLength(3);
    expect(pick("   ")).toHaveLength(3);
  });
  it("matches bare terms against any field, case-insensitively", () => {
    expect(pick("KIMI")).toEqual([ok]);
    expect(pick("429")).toEqual([limited]);
    expect(pick("docs")).toEqual([limited]);
    expect(pick("models")).toEqual([models]);
  });
  it("matches field terms against one field", () => {
    expect(pick("status:4")).toEqual([limited]);
    expect(pick("model:unknown")).toEqual([models]);
    expect(pick("session:refactor")).toEqual([ok]);
    expect(pick("outcome:http")).toEqual([limited]);
  });
  it("requires every term and supports negation", () => {
    expect(pick("chat !kimi")).toEqual([limited]);
    expect(pick("!ok")).toEqual([limited]);
    expect(pick("err")).toEqual([limited]);
    expect(pick("!err")).toEqual([ok, models]);
    expect(pick("status:200 model:glm")).toEqual([]);
  });
  it("treats unknown field prefixes as plain text", () => {
    expect(parseFilter("foo:bar")).toEqual([{ field: null, value: "foo:bar", negate: false }]);
  });
});
