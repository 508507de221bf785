// The keyboard shortcuts, in one table: the help overlay (`?`) lists exactly these.

export interface Shortcut {
  keys: string;
  does: string;
}

export const PANELS = [
  { id: "balance", key: "1", title: "Balance" },
  { id: "usage", key: "2", title: "Tokens & cost" },
  { id: "limits", key: "3", title: "Rate limits" },
  { id: "requests", key: "4", title: "Requests" },
  { id: "sessions", key: "5", title: "Sessions" },
  { id: "timeline", key: "6", title: "Timeline" },
  { id: "proof", key: "7", title: "Proof" },
] as const;

export type PanelId = (typeof PANELS)[number]["id"];

export const SHORTCUTS: Shortcut[] = [
  { keys: "?", does: "show or hide this list" },
  { keys: "1 – 7", does: "go to a panel (Balance, Tokens, Limits, Requests, Sessions, Timeline, Proof)" },
  { keys: "Tab / Shift+Tab", does: "move between controls" },
  { keys: "j / k  or  ↓ / ↑", does: "next / previous row in the focused list" },
  { keys: "Enter", does: "open the selected session in the timeline" },
  { keys: "/", does: "filter the request log" },
  { keys: "a", does: "set the Diem alert threshold" },
  { keys: "u", does: "set the USD alert threshold" },
  { keys: "m", does: "chart tokens by model or by kind" },
  { keys: "r", does: "restore the selected timeline point (asks first)" },
  { keys: "l", does: "ask Lean to check a .lean file" },
  { keys: "t", does: "theme: system → dark → light" },
  { keys: "Shift+R", does: "reconnect to the gateway now" },
  { keys: "Esc", does: "close a dialog, leave a field" },
];

/** Whether a key event comes from a text field (where letters must stay letters). */
export function inField(target: EventTarget | null): boolean {
  const el = target as HTMLElement | null;
  if (!el || !el.tagName) return false;
  const tag = el.tagName;
  return tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT" || el.isContentEditable;
}
