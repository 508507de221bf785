// plugin/dist/sidepanel.js is committed (the `sidepanel` binary embeds it); it must be exactly
// what `tsc` makes of plugin/src/sidepanel.ts. Fix a failure with `npm run build`.
import { test } from "node:test"
import assert from "node:assert/strict"
import { execFileSync } from "node:child_process"
import { mkdtempSync, readFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, dirname } from "node:path"
import { fileURLToPath } from "node:url"
import { createRequire } from "node:module"

const root = join(dirname(fileURLToPath(import.meta.url)), "..")

test("dist/sidepanel.js is the tsc output of src/sidepanel.ts (type-checked)", () => {
  const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc")
  const out = mkdtempSync(join(tmpdir(), "sp-tsc-"))
  execFileSync(process.execPath, [tsc, "-p", join(root, "tsconfig.json"), "--outDir", out], { stdio: "inherit" })
  const fresh = readFileSync(join(out, "sidepanel.js"), "utf8")
  const committed = readFileSync(join(root, "dist", "sidepanel.js"), "utf8")
  assert.equal(committed, fresh, "dist/sidepanel.js is stale: run `npm run build` in plugin/")
})
