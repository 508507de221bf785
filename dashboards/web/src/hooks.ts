// Preact hooks tying views to the store and to the clock.

import { useEffect, useRef, useState } from "preact/hooks";
import type { Store } from "./store";

/** Re-renders the caller whenever the store changed (at most once per frame). */
export function useStore(store: Store): number {
  const [, set] = useState(0);
  useEffect(() => store.subscribe(() => set(store.version)), [store]);
  return store.version;
}

/** The current time, re-rendering every `everyMs` (countdowns, data ages). */
export function useNow(everyMs = 1000): number {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const t = setInterval(() => setNow(Date.now()), everyMs);
    return () => clearInterval(t);
  }, [everyMs]);
  return now;
}

/**
 * Like `useMemo` keyed on the store version, but recomputed at most every `ms` while the version
 * keeps changing (a change of `deps` recomputes at once). Long lists use it so that a burst of
 * updates redraws them a few times a second; the 1 s clock re-render picks up the last change.
 */
export function useThrottledMemo<T>(compute: () => T, version: number, ms: number, deps: unknown[]): T {
  const ref = useRef<{ version: number; at: number; value: T; deps: unknown[] } | null>(null);
  const now = typeof performance !== "undefined" ? performance.now() : Date.now();
  const r = ref.current;
  const depsChanged = !r || deps.length !== r.deps.length || deps.some((d, i) => d !== r.deps[i]);
  if (depsChanged || (r.version !== version && now - r.at >= ms)) {
    ref.current = { version, at: now, value: compute(), deps };
  }
  return ref.current!.value;
}
