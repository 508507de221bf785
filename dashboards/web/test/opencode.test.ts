import { describe, expect, it } from "vitest";
import { linkLabel, revertText } from "../src/opencode";
import type { OpencodeLink, RevertOutcome } from "../src/types";

const link = (patch: Partial<OpencodeLink>): OpencodeLink => ({
  state: "connected",
  url: "http://127.0.0.1:4096",
  url_source: "config",
  since: 1,
  reconnects: 0,
  failures: 0,
  last_error: null,
  events: 7,
  last_revert: null,
  ...patch,
});

const revert = (patch: Partial<RevertOutcome>): RevertOutcome => ({
  ok: true,
  skipped: false,
  session_id: "ses_abc",
  message_id: "msg_1",
  restored: 42,
  status: 200,
  error: null,
  at: 1,
  ...patch,
});

describe("OpenCode link pill", () => {
  it("is absent when no server is linked", () => {
    expect(linkLabel(undefined)).toBeNull();
    expect(linkLabel(link({ state: "disabled" }))).toBeNull();
  });

  it("names each state with its tone", () => {
    expect(linkLabel(link({}))).toMatchObject({ text: "OpenCode", tone: "ok" });
    expect(linkLabel(link({ state: "reconnecting" }))?.tone).toBe("warn");
    const auth = linkLabel(link({ state: "auth_failed", last_error: "401" }));
    expect(auth).toMatchObject({ text: "OpenCode auth failed", tone: "bad" });
    expect(auth?.title).toContain("OPENCODE_SERVER_PASSWORD");
    expect(linkLabel(link({ state: "server_gone" }))).toMatchObject({ text: "OpenCode gone", tone: "bad" });
    expect(linkLabel(link({ state: "reconnecting", url_source: "plugin" }))?.title).toContain("from the plugin");
  });

  it("only notes a plugin-reported server that does not answer", () => {
    expect(linkLabel(link({ state: "server_gone", url_source: "plugin" }))).toMatchObject({ tone: "dim" });
    expect(linkLabel(link({ state: "connecting", url_source: "plugin" }))?.text).toBe("OpenCode server not reachable");
  });
});

describe("restore revert sentence", () => {
  it("says nothing when no revert was asked for or no server is linked", () => {
    expect(revertText(null)).toBeNull();
    expect(revertText(revert({ skipped: true, ok: false }))).toBeNull();
  });

  it("reports success and failure, never silently", () => {
    expect(revertText(revert({}))).toEqual({ ok: true, text: "OpenCode reverted ses_abc at message msg_1." });
    const failed = revertText(revert({ ok: false, status: 500, error: null }));
    expect(failed).toEqual({ ok: false, text: "OpenCode did not revert ses_abc at message msg_1: HTTP 500." });
    expect(revertText(revert({ ok: false, status: null, error: "connection refused" }))?.text).toContain("connection refused");
  });
});
