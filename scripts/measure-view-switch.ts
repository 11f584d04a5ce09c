/**
 * How long the app takes to switch views and to select a token, measured in headless Chromium with performance
 * marks: a mark at the click, a measure at the first frame after the one that painted the result. "Painted"
 * means: the view's content is in the page, no request is in flight, and the frame before showed no DOM change
 * and no canvas drawing (so canvases drawn by effects after the first frame are counted too).
 *
 *   npx tsc -p tsconfig.json && npm run build:web
 *   node dist/scripts/measure-view-switch.js --runs /tmp/iw-perf [--run ID] [--reps 7] [--json out.json]
 *     [--pause 3]  (seconds on the summary before the "first visit after a pause" clicks)
 *     [--first-only]  (only the first visits: quicker, to compare builds of one view's first opening)
 *     [--web DIR]   (another build of the app, e.g. one of an older commit, to compare on the same machine)
 *
 * The runs folder is copied first (the server may write to its index); the server runs in this process on
 * --model (default: the llama fixture model, which needs no download). Prints median and max per switch.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { type BrowserContext, chromium, type Page } from "playwright-core";
import { PROJECT_ROOT } from "../src/cli/default-model.js";
import { buildServer } from "../src/server/app.js";
import { CHROMIUM_ARGS } from "./chromium.js";
import { flag, requireChromium } from "./screenshot-session.js";

// Browser globals used inside page callbacks (this project compiles without the DOM lib).
interface PageElement {
  click(): void;
  title: string;
  dataset: Record<string, string | undefined>;
}
interface Perf {
  /** When the page last changed its DOM, drew on a canvas or got an answer (performance.now()). */
  lastWork: number;
  inflight: number;
}
declare const document: { querySelector(s: string): PageElement | null };
declare const window: { __perf: Perf; fetch: (...args: unknown[]) => Promise<unknown> };
declare const performance: {
  now(): number;
  mark(name: string): { startTime: number };
  measure(name: string, o: { start: string; end: number }): { duration: number };
};
declare const requestAnimationFrame: (f: () => void) => void;
declare const MutationObserver: new (f: () => void) => { observe(target: unknown, o: object): void };
declare const CanvasRenderingContext2D: { prototype: Record<string, (...args: unknown[]) => unknown> };

/** A view, its tab, and what is on the page once it has rendered its content. */
interface ViewSpec {
  id: string;
  ready: string;
}

const VIEWS: ViewSpec[] = [
  { id: "summary", ready: '[data-testid="grid-image"]' },
  { id: "maps", ready: '[data-testid="head-map"]' },
  { id: "relevancy", ready: '[data-testid="relevancy-view"]' },
  { id: "causal", ready: '[data-testid="causal-view"]' },
  { id: "faithfulness", ready: '[data-testid="faith-panel"]' },
];

/** Token lists where a click selects a token, and what shows it was taken. */
const TOKEN_LISTS: { view: string; list: string; what: string; pick: "any" | "marked" }[] = [
  { view: "maps", list: "map-tokens", what: "average the head maps over a token", pick: "any" },
  { view: "relevancy", list: "rel-tokens", what: "select a token to compute", pick: "any" },
  { view: "relevancy", list: "reliance-tokens", what: "show a token's text relevancy", pick: "marked" },
  { view: "causal", list: "causal-tokens", what: "open a token's explanation", pick: "any" },
  { view: "faithfulness", list: "faith-tokens", what: "choose the checked token", pick: "any" },
];

/**
 * Installed before the app loads: records when the page last did visible work (a DOM mutation, a canvas draw
 * or a finished request) and how many requests are in flight.
 */
function instrument(): void {
  const w = window;
  const perf: Perf = { lastWork: 0, inflight: 0 };
  w.__perf = perf;
  const touch = () => {
    perf.lastWork = performance.now();
  };
  new MutationObserver(touch).observe(document, {
    subtree: true,
    childList: true,
    attributes: true,
    characterData: true,
  });
  const proto = CanvasRenderingContext2D.prototype;
  for (const m of ["drawImage", "putImageData", "fillRect", "clearRect", "fill", "stroke", "fillText"]) {
    const orig = proto[m];
    proto[m] = function (this: unknown, ...args: unknown[]) {
      touch();
      return orig.apply(this, args);
    };
  }
  const fetch0 = w.fetch.bind(w);
  w.fetch = async (...args: unknown[]) => {
    perf.inflight++;
    try {
      return await fetch0(...args);
    } finally {
      perf.inflight--;
      touch();
    }
  };
}

/**
 * In the page: marks, clicks `click`, and measures at the first frame after `ready` holds and the previous
 * frame was quiet. Returns the measured milliseconds.
 */
async function clickAndMeasure(page: Page, name: string, click: string, ready: string): Promise<number> {
  return page.evaluate(
    async ({ name, click, ready }) => {
      const perf = window.__perf;
      const frame = () => new Promise<void>((r) => requestAnimationFrame(() => r()));
      await frame();
      const el = document.querySelector(click);
      if (!el) throw new Error(`nothing to click: ${click}`);
      const start = performance.mark(`${name}:click`);
      el.click();
      let previous = start.startTime;
      for (;;) {
        await frame();
        const now = performance.now();
        if (document.querySelector(ready) && perf.inflight === 0 && perf.lastWork < previous) {
          const m = performance.measure(name, { start: `${name}:click`, end: now });
          return m.duration as number;
        }
        if (now - start.startTime > 20_000) throw new Error(`${name}: not ready after 20 s (${ready})`);
        previous = now;
      }
    },
    { name, click, ready },
  );
}

/** Waits until the page has been quiet for a frame (after navigation or an unmeasured click). */
async function settle(page: Page, ready: string): Promise<void> {
  await page.locator(ready).first().waitFor();
  await page.evaluate(async () => {
    const perf = window.__perf;
    const frame = () => new Promise<void>((r) => requestAnimationFrame(() => r()));
    let previous = performance.now();
    for (;;) {
      await frame();
      const now = performance.now();
      if (perf.inflight === 0 && perf.lastWork < previous) return;
      previous = now;
    }
  });
}

function stats(xs: number[]): { median: number; max: number } {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return { median: s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2, max: s[s.length - 1] };
}

async function main(): Promise<void> {
  requireChromium();
  const runsDir = flag("--runs", "");
  if (!runsDir || !fs.existsSync(path.join(runsDir, "index.sqlite")))
    throw new Error("--runs: give a runs folder (one with index.sqlite), e.g. --runs /tmp/iw-perf");
  const reps = Number(flag("--reps", "7"));
  if (!Number.isInteger(reps) || reps < 1)
    throw new Error(`--reps: ${flag("--reps", "")} is not a count ≥ 1`);
  const firstOnly = process.argv.includes("--first-only");
  const pauseMs = Number(flag("--pause", "3")) * 1000;
  if (!Number.isFinite(pauseMs) || pauseMs <= 0)
    throw new Error(`--pause: ${flag("--pause", "")} is not a number of seconds > 0`);
  const modelDir = flag("--model", path.join(PROJECT_ROOT, "test/fixtures/llava-tiny-llama"));
  const jsonOut = flag("--json", "");
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), "measure-views-"));
  const dataDir = path.join(scratch, "runs");
  fs.cpSync(runsDir, dataDir, { recursive: true });
  const server = await buildServer({
    modelDir,
    dataDir,
    kernels: "auto",
    webDir: path.resolve(flag("--web", path.join(PROJECT_ROOT, "dist/web"))),
  });
  let ctx: BrowserContext | null = null;
  try {
    const base = await server.app.listen({ port: 0, host: "127.0.0.1" });
    const list = (await (await fetch(`${base}/api/runs`)).json()) as { runs: { id: string }[] };
    const runId = flag("--run", list.runs[0]?.id ?? "");
    if (!list.runs.some((r) => r.id === runId)) throw new Error(`--run: no run ${runId} in ${runsDir}`);
    const detail = (await (await fetch(`${base}/api/runs/${runId}`)).json()) as { tokens: string[] };
    const G = detail.tokens.length;
    ctx = await chromium.launchPersistentContext(path.join(scratch, "profile"), {
      executablePath: "/usr/bin/chromium",
      headless: true,
      viewport: { width: 1400, height: 900 },
      args: [...CHROMIUM_ARGS],
    });
    const page = ctx.pages()[0] ?? (await ctx.newPage());
    page.setDefaultTimeout(60_000);
    await page.addInitScript(instrument);
    const tab = (id: string) => `[data-testid="tab-${id}"]`;
    const results: { name: string; ms: number[] }[] = [];
    const record = (name: string, ms: number) => {
      const r = results.find((x) => x.name === name);
      if (r) r.ms.push(ms);
      else results.push({ name, ms: [ms] });
    };
    // First visits: a freshly loaded page, one view opened from the summary, either at once (its data asked of
    // the server then) or after a reader's pause on the summary, in which the app renders the views not visited
    // yet in the background. The page keeps the answers, so later visits do not ask again.
    for (let rep = 0; rep < reps; rep++)
      for (const v of VIEWS.slice(1))
        for (const wait of [0, pauseMs]) {
          await page.goto(`${base}/#/run/${runId}/summary`);
          await page.reload();
          await settle(page, VIEWS[0].ready);
          if (wait > 0) {
            await page.waitForTimeout(wait);
            await settle(page, VIEWS[0].ready);
          }
          record(
            wait > 0
              ? `first visit after ${wait / 1000} s: summary → ${v.id}`
              : `first visit: summary → ${v.id}`,
            await clickAndMeasure(page, `first:${v.id}`, tab(v.id), v.ready),
          );
        }
    // Then every switch between visited views, as a user going back and forth does.
    for (let rep = 0; rep < (firstOnly ? 0 : reps); rep++)
      for (const from of VIEWS)
        for (const to of VIEWS) {
          if (from === to) continue;
          await page.click(tab(from.id));
          await settle(page, from.ready);
          record(
            `${from.id} → ${to.id}`,
            await clickAndMeasure(page, `switch:${from.id}>${to.id}`, tab(to.id), to.ready),
          );
        }
    for (const t of firstOnly ? [] : TOKEN_LISTS) {
      const v = VIEWS.find((x) => x.id === t.view)!;
      await page.click(tab(v.id));
      await settle(page, v.ready);
      const chips = `[data-testid="${t.list}"] .token`;
      if ((await page.locator(chips).count()) === 0) {
        process.stderr.write(`skipped ${t.list}: not shown on this run\n`);
        continue;
      }
      // The chips in the page (a long list may render more only as it is scrolled).
      const candidates = await page.$$eval(
        chips,
        (els: PageElement[], marked: boolean) =>
          els.filter((e) => !marked || !e.title.endsWith("not computed")).map((e) => Number(e.dataset.index)),
        t.pick === "marked",
      );
      for (let rep = 0; rep < reps; rep++) {
        // Spread over the answer (the first, the middle, the end …), a different token each time.
        const k = candidates[Math.floor(((rep * 0.618034) % 1) * candidates.length)];
        const chip = `${chips}[data-index="${k}"]`;
        const selected = `${chip}.selected`;
        if (await page.locator(selected).count()) {
          // Already the chosen one: choose another first (unmeasured), so the measured click changes something.
          const other = candidates.find((c) => c !== k);
          if (other === undefined) break;
          await page.click(`${chips}[data-index="${other}"]`);
          await settle(page, v.ready);
        }
        record(
          `${t.view}: ${t.what} (${t.list})`,
          await clickAndMeasure(page, `select:${t.list}:${k}`, chip, selected),
        );
        if (t.list === "map-tokens" || t.list === "rel-tokens") {
          // Toggles: unselect again (unmeasured) so each rep selects one token.
          await page.click(chip);
          await settle(page, v.ready);
        }
      }
    }
    const load = os.loadavg().map((x) => x.toFixed(2));
    const rows = results.map((r) => ({ name: r.name, n: r.ms.length, ...stats(r.ms) }));
    const w = Math.max(...rows.map((r) => r.name.length));
    console.log(
      `run ${runId}: ${G} answer tokens · ${reps} reps · load average ${load.join(" ")} · ${os.cpus().length} CPUs`,
    );
    console.log(`${"switch".padEnd(w)}  median ms  max ms`);
    for (const r of rows)
      console.log(`${r.name.padEnd(w)}  ${r.median.toFixed(0).padStart(9)}  ${r.max.toFixed(0).padStart(6)}`);
    const worst = rows.reduce((a, b) => (b.median > a.median ? b : a));
    console.log(`slowest median: ${worst.name} ${worst.median.toFixed(0)} ms`);
    if (jsonOut)
      fs.writeFileSync(jsonOut, `${JSON.stringify({ runId, tokens: G, reps, load, rows }, null, 1)}\n`);
  } finally {
    await ctx?.close();
    await server.close();
    fs.rmSync(scratch, { recursive: true, force: true });
  }
}

main().catch((e) => {
  process.stderr.write(`${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});
