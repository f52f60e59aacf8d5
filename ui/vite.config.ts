import { defineConfig } from "vitest/config";

// The dashboard is served by the Rust binary (embedded from dist/). `npm run dev` proxies
// /api to a running server on 127.0.0.1:3001.
export default defineConfig({
  oxc: { jsx: { runtime: "automatic", importSource: "preact" } },
  build: { outDir: "dist", emptyOutDir: true, chunkSizeWarningLimit: 600 },
  server: { proxy: { "/api": "http://127.0.0.1:3001" } },
  test: { include: ["src/**/*.test.ts"], environment: "node" },
});
