// Unit tests of the sidepanel OpenCode plugin (the built plugin/dist/sidepanel.js), run with
// node's test runner: `npm test` in plugin/. A local HTTP server stands in for the gateway.
import { test } from "node:test"
import assert from "node:assert/strict"
import http from "node:http"
import { mkdtempSync, writeFileSync, existsSync, readFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"

import plugin, { internals } from "../dist/sidepanel.js"

const { resolveSettings, toWire, Forwarder, startArgs, resetSpawned } = internals

/** A fake gateway recording every POST; `respond` decides the status. */
async function gateway(respond = () => 202, port = 0) {
  const posts = []
  const srv = http.createServer((req, res) => {
    let body = ""
    req.on("data", (c) => (body += c))
    req.on("end", () => {
      posts.push({ path: req.url, headers: req.headers, body: JSON.parse(body) })
      const status = respond(posts.length)
      if (status === "hang") return
      res.writeHead(status, { "content-type": "application/json" })
      res.end("{}")
    })
  })
  await new Promise((r) => srv.listen(port, "127.0.0.1", r))
  const url = `http://127.0.0.1:${srv.address().port}`
  return { srv, url, posts, close: () => new Promise((r) => { srv.closeAllConnections?.(); srv.close(r) }) }
}

async function freePort() {
  const s = http.createServer()
  await new Promise((r) => s.listen(0, "127.0.0.1", r))
  const port = s.address().port
  await new Promise((r) => s.close(r))
  return port
}

async function until(pred, what, ms = 5000) {
  const end = Date.now() + ms
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 10))
  }
}

const settings = (over) => ({
  url: "http://127.0.0.1:9", token: "t0k3n", timeoutMs: 500, maxBuffer: 100, batchSize: 50,
  delayMs: 5, autostart: false, open: true, command: "sidepanel", args: ["serve"], ...over,
})

test("a started serve opens the dashboard unless turned off", () => {
  assert.deepEqual(startArgs(settings({ args: ["serve"] })), ["serve", "--open"])
  assert.deepEqual(startArgs(settings({ args: ["serve", "--open"] })), ["serve", "--open"])
  assert.deepEqual(startArgs(settings({ args: ["serve"], open: false })), ["serve"])
  assert.deepEqual(startArgs(settings({ args: ["demo"] })), ["demo"])
  assert.equal(resolveSettings({ settingsFile: "/nonexistent" }, { SIDEPANEL_OPEN: "0" }).open, false)
  assert.equal(resolveSettings({ settingsFile: "/nonexistent" }, {}).open, true)
})

test("toWire keeps what the gateway reads and drops noise", () => {
  const step = toWire({ id: "evt_1", type: "message.part.updated", properties: { sessionID: "ses_1",
    part: { id: "prt_1", sessionID: "ses_1", messageID: "msg_1", type: "step-finish", snapshot: "x".repeat(500),
      tokens: { total: 1290, input: 1034, output: 49, reasoning: 7, cache: { write: 0, read: 200 } }, cost: 0.001246 } } }, 42)
  assert.deepEqual(step, { event: "message.part.updated", timestamp: 42, id: "evt_1", data: { sessionID: "ses_1",
    part: { id: "prt_1", sessionID: "ses_1", messageID: "msg_1", type: "step-finish",
      tokens: { total: 1290, input: 1034, output: 49, reasoning: 7, cache: { write: 0, read: 200 } }, cost: 0.001246, reason: undefined } } })
  assert.equal(toWire({ type: "message.part.updated", properties: { part: { id: "p", type: "text", text: "hi" } } }), undefined)
  assert.equal(toWire({ type: "message.part.delta", properties: { delta: "x" } }), undefined)
  assert.equal(toWire({ type: "plugin.added", properties: {} }), undefined)
  assert.equal(toWire("nonsense"), undefined)
  const tool = toWire({ type: "message.part.updated", properties: { part: { id: "p2", sessionID: "s", type: "tool", callID: "c1",
    tool: "edit", state: { status: "completed", input: { filePath: "/p/A.lean", newString: "big" }, output: "big" } } } })
  assert.deepEqual(tool.data.part.state, { status: "completed", input: { filePath: "/p/A.lean", path: undefined } })
  const running = toWire({ type: "message.part.updated", properties: { part: { id: "p3", type: "tool", state: { status: "running" } } } })
  assert.equal(running, undefined)
  const msg = toWire({ type: "message.updated", properties: { sessionID: "s", info: { id: "m", role: "assistant", summary: { diffs: ["big"] } } } })
  assert.deepEqual(Object.keys(msg.data.info).sort(), ["agent", "cost", "finish", "id", "modelID", "providerID", "role", "sessionID", "time", "tokens"])
})

test("settings: options win over the environment, which wins over sidepanel.json", () => {
  const dir = mkdtempSync(join(tmpdir(), "sp-settings-"))
  const file = join(dir, "sidepanel.json")
  writeFileSync(file, JSON.stringify({ url: "http://127.0.0.1:1111/", token: "from-file", command: "/bin/sp", args: ["serve", "--listen", "127.0.0.1:1111"] }))
  const s = resolveSettings({ settingsFile: file }, {})
  assert.equal(s.url, "http://127.0.0.1:1111")
  assert.equal(s.token, "from-file")
  assert.deepEqual(s.args, ["serve", "--listen", "127.0.0.1:1111"])
  assert.equal(resolveSettings({ settingsFile: file }, { SIDEPANEL_TOKEN: "from-env" }).token, "from-env")
  assert.equal(resolveSettings({ settingsFile: file, token: "from-options" }, { SIDEPANEL_TOKEN: "e" }).token, "from-options")
  const missing = resolveSettings({ settingsFile: join(dir, "nope.json") }, {})
  assert.equal(missing.url, "http://127.0.0.1:8765")
  assert.equal(missing.autostart, true)
  assert.equal(resolveSettings({ settingsFile: file }, { SIDEPANEL_AUTOSTART: "0" }).autostart, false)
})

test("events are posted in order, in batches, with the token", async () => {
  const gw = await gateway()
  const fwd = new Forwarder(settings({ url: gw.url, batchSize: 3 }))
  for (let i = 0; i < 7; i++) fwd.push({ event: "session.idle", timestamp: i, data: { sessionID: `s${i}` } })
  await until(() => fwd.sent === 7, "7 events sent")
  const got = gw.posts.flatMap((p) => p.body.map((e) => e.timestamp))
  assert.deepEqual(got, [0, 1, 2, 3, 4, 5, 6])
  assert.ok(gw.posts.every((p) => p.path === "/events" && p.headers.authorization === "Bearer t0k3n"))
  assert.ok(gw.posts.every((p) => p.body.length <= 3))
  await gw.close()
})

test("a gateway that is down never throws, keeps a bounded queue and gets it later", async () => {
  const port = await freePort()
  const fwd = new Forwarder(settings({ url: `http://127.0.0.1:${port}`, maxBuffer: 5 }))
  for (let i = 0; i < 8; i++) fwd.push({ event: "session.idle", timestamp: i, data: {} })
  await fwd.drain()
  assert.equal(fwd.pending, 5)
  assert.equal(fwd.dropped, 3)
  const gw = await gateway(() => 202, port)
  await fwd.flush(5000)
  assert.equal(fwd.pending, 0)
  assert.deepEqual(gw.posts.flatMap((p) => p.body.map((e) => e.timestamp)), [3, 4, 5, 6, 7])
  await gw.close()
})

test("a hung gateway costs one short timeout, and the event hook returns at once", async () => {
  const gw = await gateway(() => "hang")
  const hooks = await plugin.server({ directory: "/tmp" }, { url: gw.url, token: "t", timeoutMs: 200, autostart: false, settingsFile: "/nonexistent" })
  const t0 = Date.now()
  await hooks.event({ event: { type: "session.idle", properties: { sessionID: "s" } } })
  assert.ok(Date.now() - t0 < 50, "event hook must not wait for the gateway")
  const t1 = Date.now()
  await hooks.dispose()
  assert.ok(Date.now() - t1 < 4000, "dispose gives up at its deadline")
  await gw.close()
})

test("refused batches (4xx) are dropped, busy answers (503) retried", async () => {
  const gw = await gateway((n) => (n === 1 ? 422 : n === 2 ? 503 : 202))
  const fwd = new Forwarder(settings({ url: gw.url, batchSize: 1 }))
  fwd.push({ event: "bad", timestamp: 1, data: {} })
  fwd.push({ event: "good", timestamp: 2, data: {} })
  await fwd.flush(5000)
  assert.equal(fwd.dropped, 1)
  assert.equal(fwd.sent, 1)
  assert.deepEqual(gw.posts.map((p) => p.body[0].event), ["bad", "good", "good"])
  await gw.close()
})

test("dispose flushes what the fire-and-forget event hook queued", async () => {
  const gw = await gateway()
  const hooks = await plugin.server({ directory: "/w" }, { url: gw.url, token: "t", delayMs: 10_000, autostart: false, settingsFile: "/nonexistent" })
  await hooks.event({ event: { type: "session.created", properties: { sessionID: "ses_1", info: { id: "ses_1", title: "T" } } } })
  await hooks["chat.params"]({ sessionID: "ses_1", agent: "title", model: { id: "m", providerID: "venice" } }, {})
  await hooks["tool.execute.after"]({ sessionID: "ses_1", tool: "write", callID: "c", args: { filePath: "/w/A.lean", content: "x" } }, {})
  await hooks.dispose()
  const names = gw.posts.flatMap((p) => p.body.map((e) => e.event))
  assert.deepEqual(names, ["plugin.started", "session.created", "chat.params", "tool.execute.after"])
  const params = gw.posts.flatMap((p) => p.body).find((e) => e.event === "chat.params")
  assert.deepEqual(params.data, { sessionID: "ses_1", agent: "title", model: { providerID: "venice", modelID: "m" } })
  await gw.close()
})

test("an unreachable loopback gateway is started once with the configured command", async () => {
  resetSpawned()
  const dir = mkdtempSync(join(tmpdir(), "sp-spawn-"))
  const marker = join(dir, "spawned.txt")
  const script = join(dir, "fake-sidepanel.mjs")
  writeFileSync(script, `import { appendFileSync } from "node:fs"; appendFileSync(${JSON.stringify(marker)}, process.argv.slice(2).join(" ") + "\\n")`)
  const port = await freePort()
  const a = new Forwarder(settings({ url: `http://127.0.0.1:${port}`, autostart: true, command: process.execPath, args: [script, "serve", "--listen", `127.0.0.1:${port}`] }))
  const b = new Forwarder(settings({ url: `http://127.0.0.1:${port}`, autostart: true, command: process.execPath, args: [script, "again"] }))
  a.push({ event: "x", timestamp: 1, data: {} })
  b.push({ event: "x", timestamp: 1, data: {} })
  await a.drain()
  await b.drain()
  await until(() => existsSync(marker), "the spawned command to run")
  await new Promise((r) => setTimeout(r, 200))
  // A started `serve` opens the dashboard once (`--open`).
  assert.equal(readFileSync(marker, "utf8"), `serve --listen 127.0.0.1:${port} --open\n`)
})
