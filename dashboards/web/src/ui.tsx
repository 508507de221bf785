// Small shared view pieces: the panel frame with its freshness badge, bars, empty states.

import type { ComponentChildren } from "preact";
import { fmtAge } from "./format";
import type { Store } from "./store";

export interface Freshness {
  stale: boolean;
  /** Age of the data shown, ms; null when there is none. */
  age: number | null;
  /** Why it is stale, for the badge's title. */
  why?: string;
}

/** Freshness of data last changed at `at`; stale whenever the connection is not live. */
export function freshness(store: Store, at: number | null | undefined, now: number, staleWhy?: string | null): Freshness {
  const age = at == null ? null : Math.max(0, now - at);
  if (store.conn.status !== "connected") {
    const since = store.conn.lastMessageAt;
    return { stale: store.state != null, age: age ?? (since == null ? null : now - since), why: "not connected to the gateway" };
  }
  if (staleWhy) return { stale: true, age, why: staleWhy };
  return { stale: false, age };
}

export function Badge({ f }: { f: Freshness }) {
  if (f.stale) {
    return (
      <span class="badge stale" title={f.why ?? "stale"} data-testid="stale">
        stale{f.age != null ? ` · ${fmtAge(f.age)}` : ""}
      </span>
    );
  }
  if (f.age == null) return null;
  return (
    <span class="age" title="age of the data shown">
      {fmtAge(f.age)}
    </span>
  );
}

export function Panel(props: {
  id: string;
  hotkey: string;
  title: string;
  fresh?: Freshness;
  extra?: ComponentChildren;
  wide?: boolean;
  children: ComponentChildren;
}) {
  return (
    <section
      class={`panel${props.wide ? " wide" : ""}`}
      id={`panel-${props.id}`}
      data-panel={props.id}
      tabIndex={-1}
      aria-labelledby={`h-${props.id}`}
    >
      <header class="panel-head">
        <h2 id={`h-${props.id}`}>
          <kbd class="hk">{props.hotkey}</kbd>
          {props.title}
        </h2>
        <div class="panel-extra">
          {props.extra}
          {props.fresh && <Badge f={props.fresh} />}
        </div>
      </header>
      <div class="panel-body">{props.children}</div>
    </section>
  );
}

/** A horizontal gauge of `value / max`; `tone` colours it. */
export function Bar({ value, max, tone }: { value: number | null; max: number | null; tone?: "ok" | "warn" | "bad" }) {
  const pct = value == null || max == null || max <= 0 ? 0 : Math.min(100, Math.max(0, (value / max) * 100));
  const t = tone ?? (pct < 10 ? "bad" : pct < 30 ? "warn" : "ok");
  return (
    <span class={`bar ${t}`} role="meter" aria-valuemin={0} aria-valuemax={max ?? 0} aria-valuenow={value ?? 0}>
      <span style={{ width: `${pct}%` }} />
    </span>
  );
}

export function Empty({ children }: { children: ComponentChildren }) {
  return <p class="empty">{children}</p>;
}

/** A label/value pair in a stat grid. */
export function Stat(props: { label: string; value: ComponentChildren; sub?: ComponentChildren; testid?: string; tone?: string }) {
  return (
    <div class={`stat${props.tone ? ` ${props.tone}` : ""}`}>
      <div class="stat-label">{props.label}</div>
      <div class="stat-value" data-testid={props.testid}>
        {props.value}
      </div>
      {props.sub != null && <div class="stat-sub">{props.sub}</div>}
    </div>
  );
}
