// The request log's filter: space-separated terms, all of which must match. A bare term matches
// any field (model, session, status, outcome, path); `field:value` matches one field
// (`model:`, `session:`, `status:`, `outcome:`, `path:`); a leading `!` negates a term.
// `err` / `!err` select failed / successful requests. Unit-tested in test/filter.test.ts.

import type { RequestRecord } from "./types";

interface Term {
  field: string | null;
  value: string;
  negate: boolean;
}

const FIELDS = new Set(["model", "session", "status", "outcome", "path"]);

export function parseFilter(text: string): Term[] {
  return text
    .trim()
    .toLowerCase()
    .split(/\s+/)
    .filter(Boolean)
    .map((raw) => {
      const negate = raw.startsWith("!");
      const body = negate ? raw.slice(1) : raw;
      const colon = body.indexOf(":");
      if (colon > 0 && FIELDS.has(body.slice(0, colon))) {
        return { field: body.slice(0, colon), value: body.slice(colon + 1), negate };
      }
      return { field: null, value: body, negate };
    })
    .filter((t) => t.value.length > 0);
}

function fieldValue(r: RequestRecord, field: string): string {
  switch (field) {
    case "model":
      return (r.model ?? "unknown").toLowerCase();
    case "session":
      return (r.session_id ?? "").toLowerCase();
    case "status":
      return r.status == null ? "" : String(r.status);
    case "outcome":
      return r.outcome.toLowerCase();
    case "path":
      return r.path.toLowerCase();
    default:
      return "";
  }
}

function matchesTerm(r: RequestRecord, t: Term): boolean {
  let hit: boolean;
  if (t.field) {
    hit = fieldValue(r, t.field).includes(t.value);
  } else if (t.value === "err" || t.value === "error") {
    hit = r.outcome !== "ok";
  } else {
    hit = [...FIELDS].some((f) => fieldValue(r, f).includes(t.value));
  }
  return t.negate ? !hit : hit;
}

export function matches(r: RequestRecord, terms: readonly Term[]): boolean {
  return terms.every((t) => matchesTerm(r, t));
}
