// Drives the browser test: `node tests/browser/run.mjs PORT`.
//
// Launches Debian's headless Chromium (never a downloaded browser) through playwright-core
// with a fresh temporary profile and the flags that keep it off the network, opens
// http://127.0.0.1:PORT/GET/index.html (the page of tests/browser/index.html, which the
// caller stored in Redis under `index`), waits for the page to set window.__result.done
// and prints one JSON object on stdout:
//   {"page": {"status", "content_type"}, "result": window.__result, "timeout": bool}
// Diagnostics (the page's console, page errors) go to stderr.
//
// Exit status: 0 every step of the page passed; 1 the page finished with failed steps
// (their names are in result.failed, each step's `error` says what it was doing);
// 2 the page did not finish in time, or the browser could not be launched or load the page.
//
// Environment: CHROMIUM (default /usr/bin/chromium), BROWSER_TEST_TIMEOUT_MS (default
// 45000, the time the page gets to finish).

import { chromium } from "playwright-core";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const port = Number(process.argv[2]);
if (!Number.isInteger(port) || port <= 0 || port > 65535) {
  console.error("usage: node tests/browser/run.mjs PORT");
  process.exit(2);
}
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
const pageTimeoutMs = Number(process.env.BROWSER_TEST_TIMEOUT_MS || 45000);
const url = `http://127.0.0.1:${port}/GET/index.html`;
const FLAGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

const out = { page: null, result: null, timeout: false };
let printed = false;
function finish(code) {
  if (!printed) {
    printed = true;
    process.stdout.write(JSON.stringify(out) + "\n");
  }
  process.exitCode = code;
  return code;
}

// Hard bound on the whole run, whatever hangs (launch, navigation, close).
const watchdog = setTimeout(() => {
  out.timeout = true;
  out.error = out.error || "the driver itself did not finish in time";
  finish(2);
  process.exit(2);
}, pageTimeoutMs + 45000);
watchdog.unref();

const profile = mkdtempSync(join(tmpdir(), "webdis-rs-chromium-"));
let context;
try {
  context = await chromium.launchPersistentContext(profile, {
    executablePath,
    headless: true,
    args: FLAGS,
    timeout: 30000,
  });
  const page = context.pages()[0] || (await context.newPage());
  page.on("console", (m) => console.error(`[page console.${m.type()}] ${m.text()}`));
  page.on("pageerror", (e) => console.error(`[page error] ${e.message}`));
  const response = await page.goto(url, { waitUntil: "load", timeout: 10000 });
  out.page = {
    status: response ? response.status() : null,
    content_type: response ? await response.headerValue("content-type") : null,
  };
  try {
    await page.waitForFunction(() => window.__result && window.__result.done, null, {
      timeout: pageTimeoutMs,
      polling: 100,
    });
  } catch (e) {
    out.timeout = true;
    out.error = `the page did not finish within ${pageTimeoutMs} ms: ${e.message.split("\n")[0]}`;
  }
  out.result = await page.evaluate(() => window.__result || null).catch(() => null);
  if (out.timeout) {
    finish(2);
  } else {
    finish(out.result && out.result.failed.length === 0 ? 0 : 1);
  }
} catch (e) {
  out.error = `browser: ${e.message.split("\n")[0]}`;
  console.error(e.stack || String(e));
  finish(2);
} finally {
  if (context) await context.close().catch(() => {});
  rmSync(profile, { recursive: true, force: true });
  clearTimeout(watchdog);
}
