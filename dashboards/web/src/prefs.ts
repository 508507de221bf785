// UI preferences, kept in this browser's localStorage only (never sent anywhere).

import type { Grouping } from "./series";

export type Theme = "system" | "dark" | "light";

export interface Prefs {
  theme: Theme;
  grouping: Grouping;
  filter: string;
  selectedSession: string | null;
}

const KEY = "sidepanel.prefs.v1";
const DEFAULTS: Prefs = { theme: "system", grouping: "model", filter: "", selectedSession: null };

export function loadPrefs(storage: Pick<Storage, "getItem"> | null = safeStorage()): Prefs {
  try {
    const raw = storage?.getItem(KEY);
    if (!raw) return { ...DEFAULTS };
    const p = JSON.parse(raw) as Partial<Prefs>;
    return {
      theme: p.theme === "dark" || p.theme === "light" ? p.theme : "system",
      grouping: p.grouping === "kind" ? "kind" : "model",
      filter: typeof p.filter === "string" ? p.filter.slice(0, 200) : "",
      selectedSession: typeof p.selectedSession === "string" ? p.selectedSession : null,
    };
  } catch {
    return { ...DEFAULTS };
  }
}

export function savePrefs(p: Prefs, storage: Pick<Storage, "setItem"> | null = safeStorage()): void {
  try {
    storage?.setItem(KEY, JSON.stringify(p));
  } catch {
    // Private mode or a full quota: preferences just are not kept.
  }
}

export function applyTheme(theme: Theme): void {
  if (theme === "system") delete document.documentElement.dataset.theme;
  else document.documentElement.dataset.theme = theme;
}

function safeStorage(): Storage | null {
  try {
    return typeof localStorage === "undefined" ? null : localStorage;
  } catch {
    return null;
  }
}
