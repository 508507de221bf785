/**
 * opencode-sidepanel plugin: forwards OpenCode's session, message, tool and file events to the
 * sidepanel gateway (`POST <url>/events`) so its dashboard shows each session's tokens and cost
 * next to what the gateway measured.
 *
 * Never blocks or breaks OpenCode: the `event` hook only queues (OpenCode does not await it);
 * one POST at a time drains the bounded queue with a short timeout; a gateway that is down is
 * retried later with backoff (and started once with `sidepanel serve` when it runs on this
 * machine); the queue is flushed in `dispose`, which OpenCode awaits. Settings come from the
 * plugin options, `SIDEPANEL_*` environment variables, or `sidepanel.json` next to this file
 * (written by `sidepanel install`, mode 0600, holding the install token).
 *
 * Source of truth: plugin/src/sidepanel.ts; plugin/dist/sidepanel.js is its `tsc` output,
 * committed and embedded in the `sidepanel` binary.
 */
import { spawn } from "node:child_process"
import { readFileSync } from "node:fs"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import type { Plugin, PluginModule } from "@opencode-ai/plugin"

const VERSION = "0.1.0"
const DEFAULT_URL = "http://127.0.0.1:8765"

/** Resolved settings of one plugin instance. */
interface Settings {
  url: string
  token: string
  timeoutMs: number
  maxBuffer: number
  batchSize: number
  delayMs: number
  autostart: boolean
  /** Add `--open` to a started `serve`: the gateway opens the dashboard in the browser. */
  open: boolean
  command: string
  args: string[]
}

type Json = Record<string, unknown>
/** `id`: OpenCode's bus event id, so an event the `opencode serve` link also reports counts once. */
type Wire = { event: string; timestamp: number; data: Json; id?: string }

/** `sidepanel serve` is started at most once per OpenCode process. */
let spawned = false

const isObj = (v: unknown): v is Json => typeof v === "object" && v !== null && !Array.isArray(v)
const str = (v: unknown): string | undefined => (typeof v === "string" ? v : undefined)
const num = (v: unknown, d: number): number => (typeof v === "number" && Number.isFinite(v) && v > 0 ? v : d)

function readSettingsFile(path: string): Json {
  try {
    const parsed: unknown = JSON.parse(readFileSync(path, "utf8"))
    return isObj(parsed) ? parsed : {}
  } catch {
    return {}
  }
}

function settingsPath(): string {
  const fromEnv = process.env.SIDEPANEL_PLUGIN_CONFIG
  if (fromEnv) return fromEnv
  try {
    return join(dirname(fileURLToPath(import.meta.url)), "sidepanel.json")
  } catch {
    return "sidepanel.json"
  }
}

/** Options win over the environment, which wins over the settings file. */
function resolveSettings(options: Json = {}, env: NodeJS.ProcessEnv = process.env): Settings {
  const file = readSettingsFile(str(options.settingsFile) ?? settingsPath())
  const pick = (key: string, envName: string): string | undefined =>
    str(options[key]) ?? env[envName] ?? str(file[key])
  const args = options.args ?? file.args
  return {
    url: (pick("url", "SIDEPANEL_URL") ?? DEFAULT_URL).replace(/\/+$/, ""),
    token: pick("token", "SIDEPANEL_TOKEN") ?? "",
    timeoutMs: num(options.timeoutMs ?? file.timeoutMs, 1500),
    maxBuffer: num(options.maxBuffer ?? file.maxBuffer, 2000),
    batchSize: num(options.batchSize ?? file.batchSize, 200),
    delayMs: num(options.delayMs ?? file.delayMs, 25),
    autostart: (options.autostart ?? file.autostart ?? env.SIDEPANEL_AUTOSTART !== "0") !== false,
    open: (options.open ?? file.open ?? env.SIDEPANEL_OPEN !== "0") !== false,
    command: pick("command", "SIDEPANEL_BIN") ?? "sidepanel",
    args: Array.isArray(args) && args.every((a) => typeof a === "string") ? args : ["serve"],
  }
}

/** Keeps only what the gateway reads, so batches stay small (no text, diffs or tool output). */
function toWire(event: unknown, now = Date.now()): Wire | undefined {
  if (!isObj(event) || typeof event.type !== "string") return undefined
  const p = isObj(event.properties) ? event.properties : {}
  const id = typeof event.id === "string" ? event.id : undefined
  const out = (data: Json): Wire => (id ? { event: event.type as string, timestamp: now, data, id } : { event: event.type as string, timestamp: now, data })
  switch (event.type) {
    case "session.created":
    case "session.updated":
    case "session.deleted": {
      const i = isObj(p.info) ? p.info : {}
      const info = { id: i.id, title: i.title, parentID: i.parentID, directory: i.directory, tokens: i.tokens, cost: i.cost }
      return out({ sessionID: p.sessionID ?? i.id, info })
    }
    case "session.status":
    case "session.idle":
    case "session.compacted":
      return out({ sessionID: p.sessionID, status: p.status })
    case "session.error": {
      const e = isObj(p.error) ? p.error : {}
      const d = isObj(e.data) ? e.data : {}
      return out({ sessionID: p.sessionID, error: { name: e.name, data: { message: d.message } } })
    }
    case "message.updated": {
      const i = isObj(p.info) ? p.info : {}
      const info = {
        id: i.id, sessionID: i.sessionID, role: i.role, time: i.time, tokens: i.tokens, cost: i.cost,
        modelID: i.modelID, providerID: i.providerID, agent: i.agent, finish: i.finish,
      }
      return out({ sessionID: p.sessionID ?? i.sessionID, info })
    }
    case "message.part.updated": {
      const part = isObj(p.part) ? p.part : {}
      const base = { id: part.id, sessionID: part.sessionID, messageID: part.messageID, type: part.type }
      if (part.type === "step-finish") {
        return out({ sessionID: p.sessionID ?? part.sessionID, part: { ...base, tokens: part.tokens, cost: part.cost, reason: part.reason } })
      }
      const state = isObj(part.state) ? part.state : {}
      if (part.type === "tool" && (state.status === "completed" || state.status === "error")) {
        const input = isObj(state.input) ? state.input : {}
        const trimmed = { status: state.status, input: { filePath: str(input.filePath), path: str(input.path) } }
        return out({ sessionID: p.sessionID ?? part.sessionID, part: { ...base, callID: part.callID, tool: part.tool, state: trimmed } })
      }
      return undefined
    }
    case "file.edited":
    case "file.watcher.updated":
      return out({ file: p.file, event: p.event })
    case "permission.asked":
    case "permission.replied":
      return out({ sessionID: p.sessionID, id: p.id ?? p.requestID, permission: p.permission, reply: p.reply })
    default:
      return undefined
  }
}

/** The bounded queue and its single sender. */
class Forwarder {
  readonly settings: Settings
  private queue: Wire[] = []
  private sending: Promise<void> | undefined
  private timer: ReturnType<typeof setTimeout> | undefined
  private failures = 0
  private retryAt = 0
  dropped = 0
  sent = 0

  constructor(settings: Settings) {
    this.settings = settings
  }

  get pending(): number {
    return this.queue.length
  }

  /** Queues one event (the oldest is dropped when full) and schedules a send. Never throws. */
  push(event: Wire): void {
    if (this.queue.length >= this.settings.maxBuffer) {
      this.queue.shift()
      this.dropped++
    }
    this.queue.push(event)
    this.schedule(this.settings.delayMs)
  }

  private schedule(ms: number): void {
    if (this.timer || this.sending) return
    this.timer = setTimeout(() => {
      this.timer = undefined
      void this.drain()
    }, Math.max(ms, this.retryAt - Date.now(), 0))
    // Never keep OpenCode alive for the sake of the gateway.
    const t = this.timer as { unref?: () => void }
    t.unref?.()
  }

  /** Sends until the queue is empty or the gateway fails; one request at a time. */
  drain(): Promise<void> {
    if (!this.sending) {
      this.sending = this.loop().finally(() => {
        this.sending = undefined
        if (this.queue.length > 0) this.schedule(0)
      })
    }
    return this.sending
  }

  private async loop(): Promise<void> {
    while (this.queue.length > 0 && Date.now() >= this.retryAt) {
      const batch = this.queue.slice(0, this.settings.batchSize)
      const outcome = await this.post(batch)
      if (outcome === "retry") {
        this.failures++
        this.retryAt = Date.now() + Math.min(30_000, 250 * 2 ** Math.min(this.failures, 7))
        return
      }
      this.queue.splice(0, batch.length)
      if (outcome === "sent") this.sent += batch.length
      else this.dropped += batch.length
      this.failures = 0
      this.retryAt = 0
    }
  }

  private async post(batch: Wire[]): Promise<"sent" | "refused" | "retry"> {
    try {
      const res = await fetch(`${this.settings.url}/events`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${this.settings.token}` },
        body: JSON.stringify(batch),
        signal: AbortSignal.timeout(this.settings.timeoutMs),
      })
      await res.arrayBuffer().catch(() => undefined)
      if (res.ok) return "sent"
      // Busy or restarting: try again later. Anything else will not get better by retrying.
      return res.status === 429 || res.status >= 500 ? "retry" : "refused"
    } catch (err) {
      this.autostart(err)
      return "retry"
    }
  }

  /** Starts `sidepanel serve` once when a loopback gateway refuses connections. */
  private autostart(err: unknown): void {
    if (spawned || !this.settings.autostart || !refused(err) || !isLoopback(this.settings.url)) return
    spawned = true
    try {
      const child = spawn(this.settings.command, startArgs(this.settings), { detached: true, stdio: "ignore" })
      child.on("error", () => undefined)
      child.unref()
    } catch {
      // No binary: the events wait in the queue until a gateway appears.
    }
    this.retryAt = Date.now() + 500
  }

  /** Sends what is queued, giving up at `deadlineMs` (used by `dispose`). */
  async flush(deadlineMs = 3000): Promise<void> {
    if (this.timer) clearTimeout(this.timer)
    this.timer = undefined
    const end = Date.now() + deadlineMs
    while (this.queue.length > 0 && Date.now() < end) {
      this.retryAt = Math.min(this.retryAt, Date.now())
      const before = this.queue.length
      await Promise.race([this.drain(), new Promise((r) => setTimeout(r, Math.max(end - Date.now(), 0)))])
      if (this.queue.length === before && this.failures > 0) {
        await new Promise((r) => setTimeout(r, Math.min(200, Math.max(end - Date.now(), 0))))
      }
    }
  }
}

/** The arguments a started gateway gets: the configured ones, plus `--open` for `serve`. */
function startArgs(s: Settings): string[] {
  const serve = s.args.includes("serve")
  return s.open && serve && !s.args.includes("--open") ? [...s.args, "--open"] : s.args
}

function refused(err: unknown): boolean {
  const e = err as { code?: string; cause?: { code?: string }; name?: string }
  const code = e?.cause?.code ?? e?.code ?? ""
  return /ECONNREFUSED|ConnectionRefused/i.test(code) || /ECONNREFUSED|ConnectionRefused/i.test(String(err))
}

function isLoopback(url: string): boolean {
  try {
    const host = new URL(url).hostname
    return host === "localhost" || host === "[::1]" || host === "::1" || host.startsWith("127.")
  } catch {
    return false
  }
}

/** The plugin: `export default { id, server }` (OpenCode's PluginModule shape). */
const server: Plugin = async (ctx, options) => {
  const fwd = new Forwarder(resolveSettings(isObj(options) ? options : {}))
  // `serverUrl` lets the gateway link to this OpenCode's server (`opencode serve`).
  const serverUrl = ctx?.serverUrl ? String(ctx.serverUrl) : undefined
  fwd.push({ event: "plugin.started", timestamp: Date.now(), data: { version: VERSION, directory: ctx?.directory, serverUrl } })
  return {
    event: async ({ event }) => {
      const wire = toWire(event)
      if (wire) fwd.push(wire)
    },
    "chat.params": async (input) => {
      fwd.push({
        event: "chat.params",
        timestamp: Date.now(),
        data: { sessionID: input.sessionID, agent: input.agent, model: { providerID: input.model?.providerID, modelID: input.model?.id } },
      })
    },
    "tool.execute.after": async (input) => {
      const args = isObj(input.args) ? input.args : {}
      fwd.push({
        event: "tool.execute.after",
        timestamp: Date.now(),
        data: { sessionID: input.sessionID, tool: input.tool, callID: input.callID, args: { filePath: str(args.filePath), path: str(args.path) } },
      })
    },
    dispose: async () => {
      await fwd.flush()
    },
  }
}

const plugin: PluginModule = { id: "opencode-sidepanel", server }
export default plugin

/**
 * Internals for the plugin's own tests. Not a function, so OpenCode's loader (which treats
 * exported functions as plugins) leaves it alone.
 */
export const internals = { resolveSettings, toWire, Forwarder, startArgs, resetSpawned: () => (spawned = false) }
