import { describe, expect, it } from "vitest";
import { storeLabel, storeReason } from "../src/header";
import { Store } from "../src/store";
import type { State, StoreHealth } from "../src/types";

const ok: StoreHealth = { status: "ok", committed: 41, lag_ms: 0, error: null, failing_since: null, failures: 0 };
const failing: StoreHealth = {
  status: "failing",
  committed: 41,
  lag_ms: 3_200,
  error: "session store /home/u/.local/share/sidepanel/sessions.db: database or disk is full",
  failing_since: Date.UTC(2026, 0, 2, 3, 4, 5),
  failures: 3,
};

describe("session store pill", () => {
  it("is hidden while the store is ok or disabled", () => {
    expect(storeLabel(undefined)).toBeNull();
    expect(storeLabel(ok)).toBeNull();
  });

  it("is amber while the store is behind, with the lag in its title", () => {
    const label = storeLabel({ ...ok, status: "behind", lag_ms: 1_500 });
    expect(label).toMatchObject({ text: "store behind", tone: "warn" });
    expect(label?.title).toContain("1s old");
    expect(label?.title).toContain("#41");
  });

  it("is red while failing, naming the reason; the title has the whole error and the counts", () => {
    const label = storeLabel(failing);
    expect(label).toMatchObject({ text: "store failing: database or disk is full", tone: "bad" });
    expect(label?.title).toContain("sessions.db: database or disk is full");
    expect(label?.title).toContain("3 failed commits");
    expect(label?.title).toContain("3s old");
    expect(storeLabel({ ...failing, failures: 1 })?.title).toContain("1 failed commit;");
  });

  it("is red when the writer stopped", () => {
    expect(storeLabel({ ...ok, status: "stopped" })).toMatchObject({ text: "store stopped", tone: "bad" });
  });

  it("keeps the reason short", () => {
    expect(storeReason(null)).toBe("unknown error");
    expect(storeReason("session store /x.db: attempt to write a readonly database")).toBe("attempt to write a readonly database");
    expect(storeReason("disk on fire")).toBe("disk on fire");
    const long = storeReason(`session store /x.db: ${"x".repeat(80)}`);
    expect(long.length).toBe(48);
    expect(long.endsWith("…")).toBe(true);
  });

  it("follows the gateway's `health` updates that carry the store", () => {
    const s = new Store();
    s.applyFull({ totals: {}, recent: [], upstream: { status: "ok" }, store: ok } as unknown as State, 5, 0);
    s.applyUpdate({ type: "health", sequence: 6, timestamp: 0, source: "gateway", payload: { upstream: { status: "ok" }, store: failing } }, 0);
    expect(storeLabel(s.state?.store)?.tone).toBe("bad");
    s.applyUpdate({ type: "health", sequence: 7, timestamp: 0, source: "gateway", payload: { upstream: { status: "ok" } } }, 0);
    expect(s.state?.store?.status).toBe("failing");
    s.applyUpdate({ type: "health", sequence: 8, timestamp: 0, source: "gateway", payload: { upstream: { status: "ok" }, store: ok } }, 0);
    expect(storeLabel(s.state?.store)).toBeNull();
  });
});
