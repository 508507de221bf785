import { describe, expect, it } from "vitest";
import { pluginLabel } from "../src/header";
import { ocTotal } from "../src/panels/sessions";
import type { PluginStatus } from "../src/types";

const base: PluginStatus = {
  events: 0,
  batches: 0,
  last_event_at: null,
  version: null,
  starts: 0,
  silent: false,
  silent_since: null,
  silent_after_ms: 60_000,
};

describe("plugin status pill", () => {
  it("says there is no plugin until one spoke", () => {
    expect(pluginLabel(undefined, 0).text).toBe("no plugin");
    expect(pluginLabel(base, 0)).toMatchObject({ text: "no plugin", tone: "dim" });
  });

  it("names the version and the age of the last event", () => {
    const p = { ...base, events: 12, batches: 3, version: "0.1.0", starts: 1, last_event_at: 10_000 };
    const label = pluginLabel(p, 40_000);
    expect(label).toMatchObject({ text: "plugin 0.1.0", tone: "ok" });
    expect(label.title).toContain("12 events in 3 posts");
    expect(label.title).toContain("30s ago");
  });

  it("turns bad while the plugin-silent alert fires", () => {
    const p = { ...base, events: 5, starts: 1, silent: true, silent_since: 1, last_event_at: 0 };
    expect(pluginLabel(p, 90_000)).toMatchObject({ text: "plugin silent", tone: "bad" });
  });
});

describe("OpenCode token totals", () => {
  it("uses OpenCode's own total when it sent one", () => {
    expect(ocTotal({ input: 1, output: 2, reasoning: 3, cache_read: 4, cache_write: 5, total: 99 })).toBe(99);
  });

  it("sums the kinds otherwise", () => {
    expect(ocTotal({ input: 1, output: 2, reasoning: 3, cache_read: 4, cache_write: 5, total: null })).toBe(15);
  });
});
