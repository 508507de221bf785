// End-to-end tests of the dashboard: the real `sidepanel demo` binary (gateway + built-in Venice
// simulator + synthetic client, no key) on a free loopback port, driven in headless Debian
// Chromium by playwright-core. Run by `tests/dashboard_e2e.rs` (cargo nextest) or directly:
//
//   SIDEPANEL_BIN=target/debug/sidepanel node dashboards/web/e2e/run.mjs
//
// Environment: SIDEPANEL_BIN (the binary; default target/debug/sidepanel), LEAN_REPLAY_BIN (the
// lean-replay stand-in, for the proof panel; default beside SIDEPANEL_BIN), CHROMIUM (default
// /usr/bin/chromium), SCREENSHOTS (default docs/screenshots; "off" writes none).
// Prints one line per test and a closing "N passed, N failed" line; exits 1 if any failed.
// Measurements go to dashboards/web/e2e/out/bench.json.

import { spawn } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import zlib from "node:zlib";
import { chromium } from "playwright-core";

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, "../../..");
const BIN = path.resolve(repo, process.env.SIDEPANEL_BIN ?? "target/debug/sidepanel");
const LEAN_REPLAY = path.resolve(repo, process.env.LEAN_REPLAY_BIN ?? path.join(path.dirname(BIN), "lean-replay"));
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const SHOTS = process.env.SCREENSHOTS === "off" ? null : path.resolve(repo, process.env.SCREENSHOTS ?? "docs/screenshots");
const OUT = path.join(here, "out");
const ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

const results = [];
const bench = {};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------- the gateway under test

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "sidepanel-e2e-"));
const config = path.join(tmp, "sidepanel.toml");
const leanLines = fs.existsSync(LEAN_REPLAY)
  ? [
      "[lean]",
      'command = "env"',
      `args = [${JSON.stringify(`LEAN_REPLAY_FIXTURES=${path.join(repo, "tests/fixtures/lean")}`)}, ${JSON.stringify(LEAN_REPLAY)}]`,
      'debounce = "20ms"',
      'restart_backoff_max = "1s"',
    ]
  : [];
fs.writeFileSync(config, ["[demo]", 'client_interval = "200ms"', "", ...leanLines, ""].join("\n"));

let port = 0;
let base = "";
let gateway = null;
let gatewayLog = "";

async function startGateway() {
  const child = spawn(BIN, ["demo", "--listen", `127.0.0.1:${port}`, "--config", config, "--data-dir", path.join(tmp, "data")], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? "warn" },
  });
  child.stdout.on("data", (d) => (gatewayLog = (gatewayLog + d).slice(-20_000)));
  child.stderr.on("data", (d) => (gatewayLog = (gatewayLog + d).slice(-20_000)));
  gateway = child;
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    if (child.exitCode != null) throw new Error(`sidepanel exited with ${child.exitCode}:\n${gatewayLog}`);
    try {
      const r = await fetch(`${base}/healthz`);
      if (r.ok) return;
    } catch {
      // not listening yet
    }
    await sleep(100);
  }
  throw new Error(`sidepanel did not answer /healthz within 30 s:\n${gatewayLog}`);
}

async function stopGateway(signal = "SIGKILL") {
  const child = gateway;
  if (!child || child.exitCode != null) return;
  const done = new Promise((r) => child.once("exit", r));
  child.kill(signal);
  await done;
  gateway = null;
}

async function apiState() {
  const r = await fetch(`${base}/api/sidepanel/state`);
  if (!r.ok) throw new Error(`/api/sidepanel/state: ${r.status}`);
  return r.json();
}

// ---------------------------------------------------------------- tiny test harness

async function test(name, fn) {
  const t0 = Date.now();
  try {
    const note = await fn();
    results.push({ name, ok: true });
    console.log(`ok - ${name} (${Date.now() - t0} ms)${note ? ` — ${note}` : ""}`);
  } catch (e) {
    results.push({ name, ok: false });
    console.log(`not ok - ${name} (${Date.now() - t0} ms)\n  ${String(e?.stack ?? e).split("\n").join("\n  ")}`);
  }
}

function assert(cond, msg) {
  if (!cond) throw new Error(msg);
}

async function until(what, fn, timeoutMs = 15_000, everyMs = 100) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    await sleep(everyMs);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last instanceof Error ? `: ${last.message}` : ""}`);
}

/** Leaves any field, so the next keys are shortcuts. */
const unfocus = (page) => page.evaluate(() => document.activeElement?.blur?.());

const pageState = (page) =>
  page.evaluate(() => {
    const { store } = window.__sidepanel;
    const s = store.state;
    return s && { sequence: store.sequence, requests: s.totals.requests, tokens: s.totals.total_tokens, diem: s.balance.diem, usd: s.balance.usd, conn: store.conn.status };
  });

/** Page and server agree on the whole-state figures at one sequence (traffic keeps flowing). */
async function inSync(page, timeoutMs = 15_000) {
  return until(
    "the page to match /api/sidepanel/state",
    async () => {
      const before = await apiState();
      const p = await pageState(page);
      const after = await apiState();
      if (!p || before.sequence !== after.sequence || p.sequence !== after.sequence) return false;
      const same = p.requests === after.totals.requests && p.tokens === after.totals.total_tokens && p.diem === after.balance.diem && p.usd === after.balance.usd;
      return same && p;
    },
    timeoutMs,
    50,
  );
}

// ---------------------------------------------------------------- the tests

async function main() {
  assert(fs.existsSync(BIN), `no sidepanel binary at ${BIN} (build it with cargo build)`);
  assert(fs.existsSync(CHROMIUM), `no Chromium at ${CHROMIUM} (Debian: apt-get install chromium)`);
  fs.mkdirSync(OUT, { recursive: true });
  port = await freePort();
  base = `http://127.0.0.1:${port}`;
  await startGateway();
  console.log(`# sidepanel demo on ${base}; Chromium ${CHROMIUM}`);

  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS });
  const context = await browser.newContext({ viewport: { width: 1440, height: 1000 }, colorScheme: "dark" });
  const errors = [];
  context.on("page", (p) => p.on("pageerror", (e) => errors.push(e.message)));
  const page = await context.newPage();
  page.on("pageerror", (e) => errors.push(e.message));

  await test("serves the embedded bundle at / and /assets/* with types and cache headers; gzip size <= 250 KB", async () => {
    const r = await fetch(`${base}/`);
    assert(r.status === 200, `GET / -> ${r.status}`);
    assert(r.headers.get("content-type")?.startsWith("text/html"), `content-type ${r.headers.get("content-type")}`);
    // The page carries the install token: never stored by caches.
    assert(r.headers.get("cache-control") === "no-store", `cache-control ${r.headers.get("cache-control")}`);
    assert(r.headers.get("content-security-policy")?.includes("default-src 'self'"), "no CSP on the page");
    const html = await r.text();
    assert(/<meta name="sidepanel-token" content="[0-9a-f]{64}"/.test(html), "the page lacks the install token");
    const assets = [...html.matchAll(/(?:src|href)="(\/assets\/[^"]+)"/g)].map((m) => m[1]);
    assert(assets.length >= 2, `expected JS and CSS assets in the page, found ${assets}`);
    let raw = html.length;
    let gz = zlib.gzipSync(html, { level: 9 }).length;
    for (const a of assets) {
      const ar = await fetch(base + a);
      assert(ar.status === 200, `${a} -> ${ar.status}`);
      assert(/immutable/.test(ar.headers.get("cache-control") ?? ""), `${a} cache-control ${ar.headers.get("cache-control")}`);
      const type = ar.headers.get("content-type") ?? "";
      assert(a.endsWith(".js") ? type.startsWith("text/javascript") : type.startsWith("text/css"), `${a} content-type ${type}`);
      const body = Buffer.from(await ar.arrayBuffer());
      raw += body.length;
      gz += zlib.gzipSync(body, { level: 9 }).length;
    }
    const missing = await fetch(`${base}/assets/nope.js`);
    assert(missing.status === 404, `/assets/nope.js -> ${missing.status}`);
    bench.bundle = { raw_bytes: raw, gzip_bytes: gz, files: assets.length + 1 };
    assert(gz <= 250 * 1024, `compressed bundle ${gz} B > 250 KB`);
    return `${(raw / 1024).toFixed(1)} KB raw, ${(gz / 1024).toFixed(1)} KB gzip`;
  });

  await test("first paint on loopback (target <= 300 ms, measured)", async () => {
    const samples = [];
    for (let i = 0; i < 7; i++) {
      const p = await context.newPage();
      await p.goto(`${base}/`, { waitUntil: "load" });
      await p.waitForFunction(() => performance.getEntriesByName("sidepanel-first-state").length > 0, null, { timeout: 10_000 });
      samples.push(
        await p.evaluate(() => {
          const nav = performance.getEntriesByType("navigation")[0];
          const paint = (n) => performance.getEntriesByName(n)[0]?.startTime ?? null;
          return {
            first_paint_ms: paint("first-paint"),
            first_contentful_paint_ms: paint("first-contentful-paint"),
            first_state_ms: performance.getEntriesByName("sidepanel-first-state")[0].startTime,
            dom_content_loaded_ms: nav.domContentLoadedEventEnd,
          };
        }),
      );
      await p.close();
    }
    const med = (k) => samples.map((s) => s[k]).sort((a, b) => a - b)[Math.floor(samples.length / 2)];
    bench.first_paint = { runs: samples.length, median: Object.fromEntries(Object.keys(samples[0]).map((k) => [k, med(k)])), samples };
    const fcp = med("first_contentful_paint_ms");
    // A measurement, not a gate: timing on a shared CI machine is recorded (docs/BENCHMARKS.md).
    assert(fcp != null, "no first contentful paint recorded");
    if (fcp > 300) console.warn(`note: median first contentful paint ${fcp} ms is above the 300 ms target`);
    return `median FCP ${fcp.toFixed(0)} ms, first live state ${med("first_state_ms").toFixed(0)} ms`;
  });

  await page.goto(`${base}/`);
  await until("Connected", async () => (await page.getAttribute('[data-testid="conn-status"]', "data-status")) === "connected");

  await test("balance on the page equals the simulator's after requests", async () => {
    await until("a few demo requests", async () => (await apiState()).totals.requests >= 3, 20_000);
    const p = await inSync(page);
    const shownDiem = Number(await page.getAttribute('[data-testid="balance-diem"]', "data-value"));
    const shownUsd = Number(await page.getAttribute('[data-testid="balance-usd"]', "data-value"));
    // The rendered text follows the store within a frame; compare it with the server's too.
    await until("the rendered balance to match", async () => {
      const s = await apiState();
      const d = Number(await page.getAttribute('[data-testid="balance-diem"]', "data-value"));
      return d === s.balance.diem || d === shownDiem;
    });
    assert(Number.isFinite(shownDiem) && Number.isFinite(shownUsd), "no balance rendered");
    return `Diem ${p.diem}, USD ${p.usd} at sequence ${p.sequence}`;
  });

  await test("tokens and cost update after a proxied request", async () => {
    const session = `ses_e2e_${Date.now()}`;
    const r = await fetch(`${base}/api/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: "Bearer e2e", "x-session-id": session },
      body: JSON.stringify({ model: "kimi-k2-5", max_completion_tokens: 64, messages: [{ role: "user", content: "e2e: count to five" }] }),
    });
    if (!r.ok) throw new Error(`chat completion -> ${r.status} ${await r.text()}`);
    await r.json();
    const truth = await until("the session in the server state", async () => (await apiState()).sessions[session]);
    assert(truth.total_tokens > 0, "the simulator reported no tokens");
    const row = page.locator(`[data-session="${session}"]`);
    await row.waitFor({ timeout: 10_000 });
    const tokensText = await row.locator('[data-testid="session-tokens"]').textContent();
    assert(tokensText.replace(/[^\d.k]/g, "").length > 0, `no tokens in the session row: ${tokensText}`);
    const shown = await page.evaluate((id) => window.__sidepanel.store.state.sessions[id], session);
    assert(shown.total_tokens === truth.total_tokens, `page tokens ${shown.total_tokens} != server ${truth.total_tokens}`);
    assert(Math.abs(shown.cost_diem - truth.cost_diem) < 1e-12 && Math.abs(shown.cost_usd - truth.cost_usd) < 1e-12, "cost differs");
    assert(truth.cost_diem > 0 || truth.cost_usd > 0, "the request cost nothing");
    // The log shows it too, with its tokens.
    await page.fill("#filter", `session:${session}`);
    await until("the request in the log", async () => (await page.locator('[data-testid="request-log"] tbody tr').count()) === 1);
    await page.fill("#filter", "");
    await unfocus(page);
    const totals = await inSync(page);
    return `${truth.total_tokens} tokens, ${truth.cost_diem} Diem; totals ${totals.tokens} tokens`;
  });

  await test("keyboard shortcuts", async () => {
    await unfocus(page);
    await page.locator("body").click({ position: { x: 5, y: 980 } });
    await page.keyboard.press("?");
    await page.locator('[data-testid="help"]').waitFor({ state: "visible", timeout: 2000 });
    const listed = await page.locator('[data-testid="help"] tr').count();
    assert(listed >= 10, `help lists ${listed} shortcuts`);
    await page.keyboard.press("Escape");
    await page.locator('[data-testid="help"]').waitFor({ state: "detached", timeout: 2000 });
    await page.keyboard.press("4");
    assert((await page.evaluate(() => document.activeElement?.id)) === "panel-requests", "4 did not focus the requests panel");
    await page.keyboard.press("/");
    assert((await page.evaluate(() => document.activeElement?.id)) === "filter", "/ did not focus the filter");
    await page.keyboard.type("status:200");
    await page.keyboard.press("Escape");
    assert((await page.evaluate(() => document.activeElement?.id)) !== "filter", "Esc did not leave the filter");
    const prefs = await page.evaluate(() => JSON.parse(localStorage.getItem("sidepanel.prefs.v1")));
    assert(prefs.filter === "status:200", `filter not kept in localStorage: ${JSON.stringify(prefs)}`);
    await page.fill("#filter", "");
    await unfocus(page);
    const chip = page.locator("#panel-usage .panel-extra button");
    const before = await chip.textContent();
    await page.keyboard.press("m");
    await until("the chart grouping to change", async () => (await chip.textContent()) !== before, 2000);
    await page.keyboard.press("m");
    const theme = () => page.evaluate(() => document.documentElement.dataset.theme ?? "system");
    await page.keyboard.press("t");
    await until("t to pin the dark theme", async () => (await theme()) === "dark", 2000);
    await page.keyboard.press("t");
    await until("t to switch to light", async () => (await theme()) === "light", 2000);
    await page.keyboard.press("t");
    await until("t to return to the system theme", async () => (await theme()) === "system", 2000);
    await page.keyboard.press("5");
    const sel0 = await page.getAttribute('#panel-sessions [aria-selected="true"]', "data-session");
    await page.keyboard.press("j");
    await until("j to select the next session", async () => (await page.getAttribute('#panel-sessions [aria-selected="true"]', "data-session")) !== sel0, 2000);
    await page.keyboard.press("k");
    await until("k to go back", async () => (await page.getAttribute('#panel-sessions [aria-selected="true"]', "data-session")) === sel0, 2000);
    await page.keyboard.press("Enter");
    assert((await page.evaluate(() => document.activeElement?.id)) === "panel-timeline", "Enter did not open the timeline");
    await page.keyboard.press("a");
    assert((await page.evaluate(() => document.activeElement?.id)) === "alert-diem", "a did not focus the Diem alert");
    await page.keyboard.press("Escape");
    // The focus ring is visible on a focused panel.
    await page.keyboard.press("1");
    const outline = await page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle);
    assert(outline !== "none", "no visible focus on the focused panel");
    return `${listed} shortcuts listed`;
  });

  await test("setAlert from the page fires when the balance crosses it", async () => {
    await unfocus(page);
    const s = await apiState();
    const below = Number((s.balance.diem - 0.0008).toFixed(6));
    await page.keyboard.press("a");
    await page.keyboard.type(String(below));
    await page.keyboard.press("Enter");
    await until("the server to store the alert", async () => (await apiState()).alerts.diem_below === below, 5000);
    await until("the page to show the threshold", async () => (await page.textContent('[data-testid="alert-state"]')).includes(String(below)), 5000);
    assert(!(await page.locator('[data-testid="alert-banner"]').isVisible()), "alert shown before the balance crossed it");
    await page.locator('[data-testid="alert-banner"]').waitFor({ state: "visible", timeout: 45_000 });
    const now = await apiState();
    assert(now.balance.diem < below, `banner shown while the balance ${now.balance.diem} >= ${below}`);
    const text = await page.textContent('[data-testid="alert-banner"]');
    // Clear it again so later screenshots show the normal page.
    await page.keyboard.press("Escape");
    await page.evaluate(() => window.__sidepanel.conn.call("setAlert", { currency: "diem", below: null }));
    await page.locator('[data-testid="alert-banner"]').waitFor({ state: "detached", timeout: 5000 });
    return `alert at ${below}: “${text.trim().slice(0, 70)}…”`;
  });

  await test("proof panel shows Lean diagnostics and goals (lean-replay)", async () => {
    await unfocus(page);
    if (!fs.existsSync(LEAN_REPLAY)) {
      const text = await page.textContent("#panel-proof");
      assert(/not available|not configured/i.test(text), "no clear Lean empty state");
      return `skipped the replay part: no lean-replay at ${LEAN_REPLAY}; empty state shown`;
    }
    await until("the Lean server to be ready", async () => (await page.textContent('[data-testid="lean-server"]'))?.includes("ready"), 20_000);
    await page.keyboard.press("l");
    await page.keyboard.type("Demo.lean");
    await page.keyboard.press("Tab");
    await page.keyboard.type("14");
    await page.keyboard.press("Enter");
    const file = page.locator('#panel-proof details[data-file="Demo.lean"]');
    await file.waitFor({ timeout: 15_000 });
    await until("diagnostics and goals", async () => (await file.locator(".diags li").count()) > 0 && (await file.locator(".goal .target").count()) > 0, 15_000);
    const diag = await file.locator(".diags li").first().textContent();
    const target = await file.locator(".goal .target").first().textContent();
    assert(/\d+:\d+/.test(diag), `diagnostic without a position: ${diag}`);
    assert(target.startsWith("⊢"), `goal target: ${target}`);
    await page.keyboard.press("Escape");
    return `first diagnostic “${diag.slice(0, 50)}”, target “${target.slice(0, 40)}”`;
  });

  await test("restore from the timeline (and a second tab)", async () => {
    await unfocus(page);
    const second = await context.newPage();
    await second.goto(`${base}/`);
    await until("the second tab to connect", async () => (await second.getAttribute('[data-testid="conn-status"]', "data-status")) === "connected");
    await page.bringToFront();
    await unfocus(page);
    await page.keyboard.press("5");
    await page.keyboard.press("Enter");
    await page.locator('#panel-timeline [data-testid="timeline"] li').first().waitFor({ timeout: 10_000 });
    await page.keyboard.press("j");
    await page.keyboard.press("r");
    await page.locator('[data-testid="confirm"]').waitFor({ state: "visible", timeout: 2000 });
    // The dialog focuses its confirm button before it is painted, so Enter confirms at once.
    const focused = await page.evaluate(() => document.activeElement?.getAttribute("data-testid"));
    assert(focused === "confirm-restore", `focus in the restore dialog: ${focused}`);
    await page.keyboard.press("Enter");
    await page.locator('[data-testid="restore-result"]').waitFor({ timeout: 10_000 }).catch(async (e) => {
      const active = await page.evaluate(() => document.activeElement?.outerHTML.slice(0, 120));
      const confirmShown = await page.locator('[data-testid="confirm"]').isVisible();
      throw new Error(`${e.message}\nactive element: ${active}; confirm dialog shown: ${confirmShown}\n${(await page.locator("#panel-timeline").innerText()).slice(0, 400)}`);
    });
    const result = (await page.textContent('[data-testid="restore-result"]')).trim();
    let note;
    if (/not available yet/i.test(result)) {
      // Session storage is not in this build yet: the page must say so plainly.
      assert(await page.locator('[data-testid="timeline-unavailable"]').isVisible(), "no 'not available' notice on the timeline");
      note = `server has no session storage yet; page says “${result.slice(0, 80)}…”`;
    } else {
      assert(/^Restored/.test(result), `restore failed: ${result}`);
      await until("the second tab to follow the restore", async () => (await second.evaluate(() => window.__sidepanel.store.notice)) != null, 10_000);
      note = "restored; the second tab applied the snapshot";
    }
    await second.close();
    return note;
  });

  await test("screenshots at 480 px and full width (1280 px)", async () => {
    if (!SHOTS) return "SCREENSHOTS=off";
    fs.mkdirSync(SHOTS, { recursive: true });
    // Fresh pages, scrolled to the top, with the tab's own history of the last minute or so.
    const wide = await browser.newContext({ viewport: { width: 1280, height: 1080 }, colorScheme: "dark" });
    const full = await wide.newPage();
    await full.goto(`${base}/`);
    await until("the full-width page to connect", async () => (await full.getAttribute('[data-testid="conn-status"]', "data-status")) === "connected");
    await sleep(2500);
    await full.screenshot({ path: path.join(SHOTS, "dashboard-full.png") });
    await wide.close();
    const narrow = await browser.newContext({ viewport: { width: 480, height: 1100 }, colorScheme: "light" });
    const np = await narrow.newPage();
    await np.goto(`${base}/`);
    await until("the narrow page to connect", async () => (await np.getAttribute('[data-testid="conn-status"]', "data-status")) === "connected");
    await sleep(2500);
    await np.screenshot({ path: path.join(SHOTS, "dashboard-480.png") });
    const overflow = await np.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    const log = await np.evaluate(() => {
      const wrap = document.querySelector("#panel-requests .scroll");
      const model = document.querySelector("#panel-requests th:nth-child(2)");
      return wrap && model && { over: wrap.scrollWidth - wrap.clientWidth, model: model.getBoundingClientRect().width };
    });
    await narrow.close();
    assert(overflow <= 0, `the page scrolls sideways at 480 px by ${overflow} px`);
    assert(log && log.over <= 1 && log.model >= 60, `request log at 480 px: ${JSON.stringify(log)} (it must fit, with the model column shown)`);
    return `written to ${path.relative(repo, SHOTS)}`;
  });

  await test("reconnects with state.since after a dropped socket, losing no update", async () => {
    const before = await pageState(page);
    await page.keyboard.press("Shift+R");
    await until("reconnected", async () => (await pageState(page)).conn === "connected" && (await apiState()).totals.requests > before.requests + 2, 15_000);
    const p = await inSync(page);
    return `at sequence ${p.sequence}, ${p.requests} requests on both sides`;
  });

  await test("killing the gateway shows Disconnected; restarting it recovers with no lost update", async () => {
    await stopGateway("SIGKILL");
    await until("Disconnected", async () => /Disconnected|Reconnecting/.test(await page.textContent('[data-testid="conn-status"]')), 10_000);
    await page.locator('[data-testid="conn-banner"]').waitFor({ state: "visible", timeout: 5000 });
    const stale = await page.locator('[data-testid="stale"]').count();
    assert(stale >= 3, `only ${stale} panels marked stale while disconnected`);
    // Retries every 2 s.
    const t0 = await page.evaluate(() => window.__sidepanel.store.conn.attempts);
    await sleep(4500);
    const t1 = await page.evaluate(() => window.__sidepanel.store.conn.attempts);
    assert(t1 - t0 >= 2 && t1 - t0 <= 3, `${t1 - t0} reconnect attempts in 4.5 s (expected one every 2 s)`);
    if (SHOTS) {
      await page.evaluate(() => window.scrollTo(0, 0));
      await page.screenshot({ path: path.join(SHOTS, "dashboard-disconnected.png"), clip: { x: 0, y: 0, width: 1440, height: 300 } });
    }
    await startGateway();
    await until("Connected again", async () => (await page.getAttribute('[data-testid="conn-status"]', "data-status")) === "connected", 10_000);
    await until("new traffic", async () => (await apiState()).totals.requests >= 5, 20_000);
    const p = await inSync(page);
    assert(!(await page.locator('[data-testid="conn-banner"]').isVisible()), "banner still shown");
    return `${stale} stale badges while down; after restart in sync at sequence ${p.sequence}`;
  });

  await test("100 updates/s keep the page above 30 fps", async () => {
    const perf = await context.newPage();
    await perf.goto(`${base}/`);
    await until("connected", async () => (await perf.getAttribute('[data-testid="conn-status"]', "data-status")) === "connected");
    const r = await perf.evaluate(
      () =>
        new Promise((resolve) => {
          const { store } = window.__sidepanel;
          const tmpl = store.state.recent[store.state.recent.length - 1];
          let seq = store.sequence + 1_000_000; // far ahead of the live stream, applied like live updates
          let sent = 0;
          const frames = [];
          const start = performance.now();
          const tick = (t) => {
            frames.push(t);
            if (t - start < 5000) requestAnimationFrame(tick);
          };
          requestAnimationFrame(tick);
          const timer = setInterval(() => {
            // 100 per second in bursts of 10 every 100 ms, like a busy gateway.
            for (let i = 0; i < 10; i++) {
              const now = Date.now();
              const request = { ...(tmpl ?? {}), started_at: now - 500, latency_ms: 500, model: `bench-${sent % 4}`, session_id: `bench-${sent % 8}`, usage: { prompt_tokens: 50, completion_tokens: 100, total_tokens: 150, cached_tokens: 0, cache_creation_tokens: 0, reasoning_tokens: 0 }, outcome: "ok", status: 200, retries: [], attempts: 1 };
              const totals = { ...store.state.totals, requests: store.state.totals.requests + 1, total_tokens: store.state.totals.total_tokens + 150 };
              store.applyUpdate({ type: "usage", timestamp: now, sequence: seq++, source: "venice", payload: { request, model: request.model, model_totals: totals, session_totals: totals, totals } });
              sent++;
            }
          }, 100);
          setTimeout(() => {
            clearInterval(timer);
            const gaps = frames.slice(1).map((t, i) => t - frames[i]);
            const secs = (frames[frames.length - 1] - frames[0]) / 1000;
            gaps.sort((a, b) => a - b);
            resolve({ updates: sent, seconds: secs, fps: (frames.length - 1) / secs, p95_frame_ms: gaps[Math.floor(gaps.length * 0.95)], worst_frame_ms: gaps[gaps.length - 1] });
          }, 5100);
        }),
    );
    await perf.close();
    bench.updates_100_per_s = r;
    assert(r.fps > 0, "no frames rendered under 100 updates/s");
    if (r.fps < 30) console.warn(`note: ${r.fps.toFixed(1)} fps under 100 updates/s is below the 30 fps target`);
    return `${r.updates} updates in ${r.seconds.toFixed(1)} s: ${r.fps.toFixed(0)} fps, p95 frame ${r.p95_frame_ms.toFixed(1)} ms`;
  });

  await test("no script errors on the page", async () => {
    assert(errors.length === 0, errors.join("\n"));
  });

  await browser.close();
}

let fatal = null;
try {
  await main();
} catch (e) {
  fatal = e;
  console.log(`not ok - e2e setup\n  ${String(e?.stack ?? e)}`);
  results.push({ name: "setup", ok: false });
} finally {
  await stopGateway("SIGTERM").catch(() => {});
  fs.rmSync(tmp, { recursive: true, force: true });
}
try {
  fs.mkdirSync(OUT, { recursive: true });
  fs.writeFileSync(path.join(OUT, "bench.json"), JSON.stringify({ at: new Date().toISOString(), ...bench }, null, 2));
} catch {
  // measurements are a by-product
}
const passed = results.filter((r) => r.ok).length;
const failed = results.length - passed;
if (failed && !fatal) console.log(`# gateway log (tail):\n${gatewayLog.slice(-3000)}`);
console.log(`e2e: ${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
