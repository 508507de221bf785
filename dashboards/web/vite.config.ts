// Bundles the dashboard for build.rs (which passes --outDir into cargo's OUT_DIR) and runs the
// Vitest unit tests. Preact's JSX needs no plugin: esbuild's automatic runtime is pointed at it.
import { defineConfig } from "vitest/config";

// `npm run dev` serves the page with hot reload and forwards the gateway's routes to a running
// `sidepanel` (default 127.0.0.1:8765; SIDEPANEL_DEV_GATEWAY=http://127.0.0.1:PORT for another).
const gateway = process.env.SIDEPANEL_DEV_GATEWAY ?? "http://127.0.0.1:8765";

export default defineConfig({
  base: "/",
  esbuild: { jsx: "automatic", jsxImportSource: "preact" },
  build: {
    target: "es2020",
    assetsDir: "assets",
    reportCompressedSize: false,
    // One JS and one CSS file: fewer requests on first paint, and build.rs embeds whatever it finds.
    cssCodeSplit: false,
    modulePreload: false,
  },
  server: {
    host: "127.0.0.1",
    proxy: {
      "/ws": { target: gateway, ws: true },
      "/api": gateway,
      "/metrics": gateway,
      "/healthz": gateway,
    },
  },
  test: {
    include: ["test/**/*.test.ts"],
    environment: "node",
  },
});
