// The tokens/min chart (uPlot). The plot is built once per set of lines and theme, then fed
// new data; the x range slides every second, so new points move in smoothly.

import { useEffect, useRef } from "preact/hooks";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import type { Series } from "./series";

export const PALETTE = ["#5b9bd5", "#d9a35b", "#62b58f", "#b58cd9", "#56b1bf", "#d9737c", "#9aa65b", "#8c9bd9"];

function cssVar(name: string, fallback: string): string {
  const v = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  return v || fallback;
}

function compact(v: number): string {
  if (v >= 1e6) return `${(v / 1e6).toFixed(1)}M`;
  if (v >= 1e3) return `${(v / 1e3).toFixed(v >= 1e4 ? 0 : 1)}k`;
  return String(Math.round(v));
}

function hhmm(v: number): string {
  const d = new Date(v * 1000);
  return `${String(d.getHours()).padStart(2, "0")}:${String(d.getMinutes()).padStart(2, "0")}`;
}

export function TokenChart({ series, themeKey }: { series: Series; themeKey: string }) {
  const host = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const shape = useRef("");

  useEffect(() => {
    const el = host.current;
    if (!el) return;
    const data = [series.xs, ...series.lines.map((l) => l.ys)] as uPlot.AlignedData;
    const key = `${themeKey}|${series.lines.map((l) => l.key).join("|")}`;
    if (plot.current && shape.current === key) {
      plot.current.setData(data);
      return;
    }
    plot.current?.destroy();
    const fg = cssVar("--fg-dim", "#888");
    const grid = cssVar("--grid", "rgba(128,128,128,.15)");
    const opts: uPlot.Options = {
      width: Math.max(200, el.clientWidth),
      height: 150,
      padding: [6, 8, 0, 0],
      cursor: { drag: { x: false, y: false }, points: { size: 5 } },
      legend: { show: true, live: false },
      scales: { x: { time: true }, y: { range: (_u, _min, max) => [0, Math.max(10, max * 1.1)] } },
      axes: [
        {
          stroke: fg,
          grid: { stroke: grid, width: 1 },
          ticks: { stroke: grid, width: 1 },
          size: 28,
          font: "11px system-ui",
          // Whole minutes only, as HH:MM.
          incrs: [60, 120, 300, 600, 900, 1800],
          values: (_u, vals) => vals.map(hhmm),
        },
        {
          stroke: fg,
          grid: { stroke: grid, width: 1 },
          ticks: { show: false },
          size: 42,
          font: "11px system-ui",
          values: (_u, vals) => vals.map(compact),
        },
      ],
      series: [
        { value: (_u, v) => (v == null ? "" : new Date(v * 1000).toLocaleTimeString()) },
        ...series.lines.map((l, i) => ({
          label: l.key,
          stroke: PALETTE[i % PALETTE.length],
          width: 1.5,
          fill: `${PALETTE[i % PALETTE.length]}1f`,
          points: { show: false },
          value: (_u: uPlot, v: number | null) => (v == null ? "—" : `${compact(v)}/min`),
        })),
      ],
    };
    plot.current = new uPlot(opts, data, el);
    shape.current = key;
  }, [series, themeKey]);

  useEffect(() => {
    const el = host.current;
    if (!el || typeof ResizeObserver === "undefined") return;
    const ro = new ResizeObserver(() => {
      if (plot.current) plot.current.setSize({ width: Math.max(200, el.clientWidth), height: 150 });
    });
    ro.observe(el);
    return () => {
      ro.disconnect();
      plot.current?.destroy();
      plot.current = null;
      shape.current = "";
    };
  }, []);

  return <div class="chart" ref={host} data-testid="token-chart" />;
}
