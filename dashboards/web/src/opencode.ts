// The link to `opencode serve` as the page shows it: the header pill and what a restore's
// session revert did. Pure; unit-tested in test/opencode.test.ts.

import { shortId } from "./format";
import type { OpencodeLink, RevertOutcome } from "./types";

/** The `opencode serve` link's pill; `null` when no server is configured or learned. */
export function linkLabel(link: OpencodeLink | undefined): { text: string; tone: string; title: string } | null {
  if (!link || link.state === "disabled") return null;
  const where = link.url ? ` ${link.url}${link.url_source === "plugin" ? " (from the plugin)" : ""}` : "";
  const why = link.last_error ? `; last error: ${link.last_error}` : "";
  // A URL learned from the plugin may name a server that does not listen (`opencode run`):
  // not reaching it is worth a note, not an alarm.
  const learned = link.url_source === "plugin";
  if (learned && (link.state === "connecting" || link.state === "server_gone")) {
    return { text: "OpenCode server not reachable", tone: "dim", title: `the plugin reported opencode serve at${where}, which does not answer${why}` };
  }
  switch (link.state) {
    case "connected":
      return { text: "OpenCode", tone: "ok", title: `linked to opencode serve${where}; ${link.events} events` };
    case "connecting":
      return { text: "OpenCode…", tone: "warn", title: `connecting to opencode serve${where}${why}` };
    case "reconnecting":
      return { text: "OpenCode reconnecting", tone: "warn", title: `stream lost, retrying${where}${why}` };
    case "auth_failed":
      return { text: "OpenCode auth failed", tone: "bad", title: `opencode serve${where} refused the password: check OPENCODE_SERVER_PASSWORD${why}` };
    case "server_gone":
      return { text: "OpenCode gone", tone: "bad", title: `opencode serve${where} does not answer${why}` };
  }
}

/** One sentence on a restore's OpenCode revert; `null` when none was asked for. */
export function revertText(r: RevertOutcome | null): { ok: boolean; text: string } | null {
  if (!r) return null;
  if (r.skipped) return null;
  const target = `${r.session_id ? shortId(r.session_id, 24) : "the session"} at message ${shortId(r.message_id, 24)}`;
  if (r.ok) return { ok: true, text: `OpenCode reverted ${target}.` };
  const why = r.error ?? (r.status != null ? `HTTP ${r.status}` : "no answer");
  return { ok: false, text: `OpenCode did not revert ${target}: ${why}.` };
}
