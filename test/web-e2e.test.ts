/**
 * The web app end to end in real headless Chromium (Debian's /usr/bin/chromium via playwright-core) against a
 * real server with the llama fixture model: upload and paint, ask, wait for the streamed answer, open every view
 * and check real content (heatmap canvases with non-uniform pixels, token lists equal to the run's tokens, a
 * causal graph with nodes, exported PNGs that decode, an archive that imports), a WebP upload, a readable error
 * for a broken image, truncated images refused in place of the picture, and a 640-token run that renders without
 * long main-thread stalls. Screenshots of every view
 * go to $SCREENSHOT_DIR (default dist/screenshots).
 *
 * Skipped (with a message) only when /usr/bin/chromium is missing outside CI; under CI=true it must run.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { after, before, describe, test } from "node:test";
import type { Page } from "playwright-core";
import { PNG } from "pngjs";
import { encodePng } from "../src/hf/image-decode.js";
import { SqliteJobJournal } from "../src/server/job-journal.js";
import { RunStore } from "../src/server/run-store.js";
import { pngWithDataCut } from "./broken-images.js";
import { browserSkip, canvasColors, launchBrowser, type TestBrowser } from "./browser-utils.js";
import { ROOT, tempDir } from "./fixture-utils.js";
import { fixtureImage, imageForm, readJobEvents, startTestServer, type TestServer } from "./server-utils.js";
import { ensureWebBuild, WEB_DIR } from "./web-build.js";

// Browser globals used inside page.evaluate callbacks (this project compiles without the DOM lib).
declare const document: any;
declare const location: any;
declare const getComputedStyle: any;
declare const window: any;
declare const requestAnimationFrame: any;
declare const PerformanceObserver: any;
type HTMLCanvasElement = any;

/** As web/src/components/common.tsx: chips a token list renders at first. */
const CHIP_PAGE = 120;

const SHOTS = path.resolve(ROOT, process.env.SCREENSHOT_DIR ?? "dist/screenshots");
const skip = browserSkip();

let ts: TestServer;
let browser: TestBrowser;
let page: Page;
let runId: string;
const work = tempDir("e2e");

/** Same display mapping as the app's token chips. */
function tokenLabel(t: string): string {
  if (t === "") return "∅";
  if (t === "\n" || t === "<0x0A>") return "⏎";
  if (/^\s+$/.test(t)) return "␣";
  return t;
}

async function api(p: string): Promise<any> {
  const r = await fetch(`${ts.base}${p}`);
  assert.equal(r.status, 200, `${p}: ${r.status}`);
  return r.json();
}

async function shot(name: string): Promise<void> {
  fs.mkdirSync(SHOTS, { recursive: true });
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
}

function pngStats(file: string): { width: number; height: number; colors: number } {
  const png = PNG.sync.read(fs.readFileSync(file));
  const seen = new Set<number>();
  for (let i = 0; i < png.data.length && seen.size < 1000; i += 4)
    seen.add((png.data[i] << 16) | (png.data[i + 1] << 8) | png.data[i + 2]);
  return { width: png.width, height: png.height, colors: seen.size };
}

/** The tallest band of rows that are plain white across the figure (a blank stripe inside a panel). */
function tallestBlankBand(file: string): number {
  const png = PNG.sync.read(fs.readFileSync(file));
  let run = 0;
  let best = 0;
  for (let y = 0; y < png.height; y++) {
    let white = true;
    for (let x = 5; x < png.width - 5 && white; x++) {
      const i = (y * png.width + x) * 4;
      white = png.data[i] === 255 && png.data[i + 1] === 255 && png.data[i + 2] === 255;
    }
    run = white ? run + 1 : 0;
    best = Math.max(best, run);
  }
  return best;
}

async function savePng(name: string): Promise<string> {
  const [dl] = await Promise.all([
    page.waitForEvent("download"),
    page.locator('[data-testid="export-png"]').first().click(),
  ]);
  const file = path.join(work, name);
  await dl.saveAs(file);
  fs.mkdirSync(SHOTS, { recursive: true });
  fs.copyFileSync(file, path.join(SHOTS, `export-${name}`));
  return file;
}

describe("web app in headless Chromium", { skip }, () => {
  const errors: string[] = [];

  before(async () => {
    ensureWebBuild();
    ts = await startTestServer({ webDir: WEB_DIR, limits: { maxNewTokens: 2048 } });
    browser = await launchBrowser({ timeoutMs: 30_000, acceptDownloads: true, errors });
    page = browser.page;
    await page.goto(ts.base);
  });

  after(async () => {
    await browser?.close();
    await ts?.close();
    if (ts) fs.rmSync(ts.dataDir, { recursive: true, force: true });
    fs.rmSync(work, { recursive: true, force: true });
  });

  test("generate: upload, paint (with undo), ask, the answer streams in", async () => {
    await page.setInputFiles(
      '[data-testid="image-input"]',
      path.join(ROOT, "test/fixtures/llava-tiny-llama/image.png"),
    );
    const paint = page.locator('[data-testid="paint-canvas"]');
    await paint.waitFor();
    const box = (await paint.boundingBox())!;
    const stroke = async (dx: number) => {
      await page.mouse.move(box.x + 30 + dx, box.y + 30);
      await page.mouse.down();
      await page.mouse.move(box.x + 160 + dx, box.y + 110, { steps: 10 });
      await page.mouse.up();
    };
    await stroke(200);
    assert.equal(await page.locator(".badge").textContent(), "edited");
    await page.click('[data-testid="undo"]');
    assert.equal(await page.locator(".badge").count(), 0, "undo removed the only stroke");
    await stroke(0);
    await page.fill('[data-testid="max-new-tokens"]', "10");
    await page.selectOption('[data-testid="image-mode"]', "pad");
    await page.fill('[data-testid="question"]', "What is in the top left corner?");
    await page.click('[data-testid="ask"]');
    await page.locator('[data-testid="answer"][data-state="done"]').waitFor();
    const streamed = await page.locator(".answer-token").allTextContents();
    const runs = (await api("/api/runs")).runs;
    assert.equal(runs.length, 1);
    runId = runs[0].id;
    const detail = await api(`/api/runs/${runId}`);
    assert.deepEqual(
      streamed,
      detail.tokens.filter((t: string) => t !== "</s>").map(tokenLabel),
      "streamed tokens are the run's tokens (the stop token is not part of the answer's text)",
    );
    assert.equal(detail.settings.image_mode, "pad");
    assert.equal(detail.prompt, "What is in the top left corner?");
    // The painted image (not the original file) reached the model.
    const input = fs.readFileSync(path.join(ts.dataDir, runId, "input.png"));
    assert.notDeepEqual(input, Buffer.from(fixtureImage()));
    const painted = PNG.sync.read(input);
    assert.equal(painted.width, 157);
    const px = (x: number, y: number) => [
      ...painted.data.subarray((y * painted.width + x) * 4, (y * painted.width + x) * 4 + 3),
    ];
    assert.ok(
      Array.from({ length: 40 }, (_, i) => px(20 + i, 20 + Math.round(i * 0.6))).some(
        (p) => p[0] < 30 && p[1] < 30 && p[2] < 30,
      ),
      "black paint along the stroke",
    );
    await page.locator(`[data-testid="run-list"] li[data-run="${runId}"]`).waitFor();
    await shot("generate");
    const gen = pngStats(await savePng("generate.png"));
    assert.ok(gen.width > 400 && gen.colors > 50, JSON.stringify(gen));
  });

  test("attention summary: two non-uniform layer × head heatmaps, hover values, click opens layer and head", async () => {
    await page.click('[data-testid="open-views"] >> text=Attention summary');
    const gi = page.locator('[data-testid="grid-image"]');
    const gq = page.locator('[data-testid="grid-question"]');
    await gi.waitFor();
    assert.ok((await canvasColors(gi)) > 8, "image-to-answer heatmap has colours");
    assert.ok((await canvasColors(gq)) > 8, "question-to-answer heatmap has colours");
    await gi.scrollIntoViewIfNeeded();
    const b = (await gi.boundingBox())!;
    // A marker pixel in the corner: a redraw of the grid would clear it.
    const marker = () =>
      gi.evaluate((el) => {
        const d = (el as unknown as HTMLCanvasElement).getContext("2d").getImageData(0, 0, 1, 1).data;
        return [...d].join(",");
      });
    await gi.evaluate((el) => {
      const ctx = (el as unknown as HTMLCanvasElement).getContext("2d");
      ctx.fillStyle = "#ff00ff";
      ctx.fillRect(0, 0, 1, 1);
    });
    // Cell of layer 2, head 1 (34 px left axis, 6 px top, 48 px cells for a 4×4 grid).
    await page.mouse.move(b.x + 34 + 2.5 * 48, b.y + 6 + 1.5 * 48);
    const tip = page.locator('[data-testid="tooltip"]');
    await tip.waitFor();
    assert.equal(await marker(), "255,0,255,255", "hovering shows a tooltip, it does not redraw the grid");
    const summary = await api(`/api/runs/${runId}/attention/summary`);
    const text = (await tip.textContent()) ?? "";
    assert.match(text, /layer 2 · head 1: /);
    assert.ok(
      Math.abs(Number(text.split(": ")[1]) - summary.image[2][1]) < 5e-4,
      `${text} vs ${summary.image[2][1]}`,
    );
    await page.mouse.click(b.x + 34 + 2.5 * 48, b.y + 6 + 1.5 * 48);
    const detail = page.locator('[data-testid="detail-map"]');
    await detail.waitFor();
    await page.waitForFunction(() => location.hash.includes("layer=2&head=1"));
    assert.match(
      (await page.locator('[data-testid="summary-detail"] h3').textContent()) ?? "",
      /Layer 2, head 1/,
    );
    assert.ok((await canvasColors(detail)) > 50, "the head's map over the image");
    await shot("attention-summary");
    const file = await savePng("summary.png");
    const st = pngStats(file);
    assert.ok(st.width > 400 && st.height > 300 && st.colors > 50, JSON.stringify(st));
  });

  test("attention maps: per-head maps, token list, per-head strip, patch selector", async () => {
    await page.click('[data-testid="tab-maps"]');
    await page.locator('[data-testid="head-map"]').first().waitFor();
    const maps = page.locator('[data-testid="head-map"]');
    assert.equal(await maps.count(), 4);
    for (let i = 0; i < 4; i++) assert.ok((await canvasColors(maps.nth(i))) > 50, `head map ${i}`);
    const detail = await api(`/api/runs/${runId}`);
    const chips = await page.locator('[data-testid="map-tokens"] .token').allTextContents();
    assert.deepEqual(chips, detail.tokens.map(tokenLabel));
    assert.ok((await canvasColors(page.locator('[data-testid="head-strip"]'))) > 3);
    // Choose tokens 0 and 2 and layer 1: the maps follow.
    await page.selectOption('[data-testid="layer-select"]', "1");
    await page.locator('[data-testid="map-tokens"] .token').nth(0).click();
    await page.locator('[data-testid="map-tokens"] .token').nth(2).click();
    await page.locator('.muted:has-text("Layer 1 · tokens")').waitFor();
    const heads = await api(`/api/runs/${runId}/attention/heads?layer=1&tokens=0,2`);
    const captions = await page.locator(".head-card .caption").allTextContents();
    assert.deepEqual(
      captions.map((c) => Number(/head (\d+)/.exec(c)![1])),
      heads.heads.map((h: any) => h.head),
      "cards sorted by mean like the API",
    );
    // Patch selector: drag a rectangle of 3 × 2 patches, from patch (1, 1) to patch (2, 3). The canvas is the
    // original 157×100 picture; in "pad" mode the grid reaches above and below it (row 0 is all padding).
    const pc = page.locator('[data-testid="patch-canvas"]');
    await pc.scrollIntoViewIfNeeded();
    const b = (await pc.boundingBox())!;
    const at = (patch: number): [number, number] => {
      const [x0, y0, x1, y1] = detail.image.boxes[patch];
      return [b.x + ((x0 + x1) / 2) * (b.width / 157), b.y + ((y0 + y1) / 2) * (b.height / 100)];
    };
    await page.mouse.move(...at(9));
    await page.mouse.down();
    await page.mouse.move(...at(19), { steps: 6 });
    await page.mouse.up();
    await page.locator('text="6 patches selected"').waitFor();
    const coloured = page.locator('[data-testid="patch-tokens"] .token');
    await coloured.first().waitFor();
    assert.deepEqual(await coloured.allTextContents(), detail.tokens.map(tokenLabel));
    const bgs = new Set(
      await coloured.evaluateAll((els) => els.map((e) => getComputedStyle(e).backgroundColor)),
    );
    assert.ok(bgs.size > 2, "tokens coloured by their attention to the patches");
    const pa: any = await (
      await fetch(`${ts.base}/api/runs/${runId}/attention/patches`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ layer: 1, patches: [9, 10, 11, 17, 18, 19] }),
      })
    ).json();
    const titles = await coloured.evaluateAll((els) => els.map((e) => e.getAttribute("title")));
    for (const [i, t] of titles.entries()) {
      assert.ok(Math.abs(Number(t!.split(": ")[1]) - pa.tokenMean[i]) < 5e-4, `${t} vs ${pa.tokenMean[i]}`);
    }
    assert.ok((await canvasColors(page.locator('[data-testid="patch-head-strip"]'))) > 3);
    await shot("attention-maps");
    const st = pngStats(await savePng("maps.png"));
    assert.ok(st.width > 400 && st.colors > 50, JSON.stringify(st));
  });

  test("relevancy: computed on demand with progress, maps per word, text bars, reliance", async () => {
    await page.click('[data-testid="tab-relevancy"]');
    await page.locator("text=Nothing computed yet").waitFor();
    await page.locator('[data-testid="rel-tokens"] .token').nth(1).click();
    await page.click('[data-testid="rel-compute-selected"]');
    await page.locator('[data-testid="rel-tokens"] .token.marked').first().waitFor();
    assert.equal(await page.locator('[data-testid="rel-tokens"] .token.marked').count(), 1);
    await page.click('[data-testid="rel-compute-all"]');
    await page.locator('[data-testid="job"][data-state="done"]').waitFor();
    const detail = await api(`/api/runs/${runId}`);
    await page.waitForFunction(
      (n) => document.querySelectorAll('[data-testid="rel-tokens"] .token.marked').length === n,
      detail.tokens.length,
    );
    const maps = page.locator('[data-testid="rel-map"]');
    await maps.first().waitFor();
    const api_ = await api(`/api/runs/${runId}/relevancy/maps?mode=exact&kind=llm&by=word`);
    const expected = api_.items.filter((i: any) => !i.separator).map((i: any) => i.label || "␣");
    assert.deepEqual(await page.locator('[data-testid="rel-label"]').allTextContents(), expected);
    for (let i = 0; i < (await maps.count()); i++)
      assert.ok((await canvasColors(maps.nth(i))) > 50, `relevancy map ${i}`);
    const bars = page.locator('[data-testid="rel-bars"]');
    await bars.waitFor();
    assert.equal(await bars.getAttribute("data-points"), "4", "top-3 words + max_img");
    assert.ok((await canvasColors(bars)) > 3);
    assert.equal(await page.locator('[data-testid="reliance-tokens"] .token').count(), detail.tokens.length);
    // Vision-tower maps too.
    await page.selectOption('[data-testid="rel-kind"]', "all_v2");
    await page.click('[data-testid="rel-compute-all"]');
    await page.locator('[data-testid="job"][data-state="done"]').waitFor();
    await page.waitForFunction(() => document.querySelectorAll('[data-testid="rel-map"]').length > 0);
    assert.ok((await canvasColors(page.locator('[data-testid="rel-map"]').first())) > 50);
    await page.selectOption('[data-testid="rel-kind"]', "llm");
    await page.locator('[data-testid="rel-map"]').first().waitFor();
    await shot("relevancy");
    const file = await savePng("relevancy.png");
    const st = pngStats(file);
    assert.ok(st.width > 400 && st.colors > 50, JSON.stringify(st));
    const band = tallestBlankBand(file);
    assert.ok(band < 30, `a blank band of ${band} px rows in the export`);
  });

  test("causality: explain a token → per-head patches, importance chart, causal graph with nodes, growth", async () => {
    await page.click('[data-testid="tab-causal"]');
    await page.locator('[data-testid="causal-tokens"] .token').nth(3).click();
    await page.waitForFunction(() => location.hash.includes("token=3"));
    await page.click('[data-testid="causal-compute"]');
    const graph = page.locator('[data-testid="causal-graph"]');
    await graph.waitFor();
    const view = await api(`/api/runs/${runId}/causal/3`);
    assert.equal(view.heads.length, 4);
    await page.waitForFunction(
      () => Number(document.querySelector('[data-testid="causal-graph"]')?.getAttribute("data-nodes")) > 0,
    );
    const nodes = Number(await graph.getAttribute("data-nodes"));
    const best = [...view.heads].sort((a: any, b: any) => (b.importance ?? -1) - (a.importance ?? -1))[0];
    assert.equal(
      nodes,
      best.nodes.filter((n: any) => n.inExplanation && n.radius !== null).length,
      "graph shows the explanation of the most important head",
    );
    assert.ok(nodes >= 1);
    const graphCanvases = graph.locator("canvas");
    let maxColors = 0;
    for (let i = 0; i < (await graphCanvases.count()); i++)
      maxColors = Math.max(maxColors, await canvasColors(graphCanvases.nth(i)));
    assert.ok(maxColors > 3, "the graph is drawn");
    assert.equal(await page.locator('[data-testid="causal-head-map"]').count(), 4);
    assert.ok((await canvasColors(page.locator('[data-testid="head-importance"]'))) > 3);
    // The y-axis title runs along the left edge: whole, it starts below the canvas's top and ends above its
    // bottom (cut off, its letters touch an edge).
    const titleAtEdge = await page.locator('[data-testid="head-importance"]').evaluate((el) => {
      const c = el as unknown as HTMLCanvasElement;
      const edge = (y: number) =>
        c
          .getContext("2d")
          .getImageData(0, y, 16, 2)
          .data.some((v: number, i: number) => i % 4 === 3 && v > 0);
      return { top: edge(0), bottom: edge(c.height - 2) };
    });
    assert.deepEqual(titleAtEdge, { top: false, bottom: false }, "the y-axis title is not cut off");
    assert.ok((await canvasColors(page.locator('[data-testid="causal-growth"]'))) > 3);
    // Shrinking the search radius to 0 leaves only the explained position.
    await page.locator('[data-testid="causal-radius"]').fill("0");
    await page.waitForFunction(
      () => document.querySelector('[data-testid="causal-graph"]')?.getAttribute("data-nodes") === "1",
    );
    await page.locator('[data-testid="causal-radius"]').fill(String(view.params.max_range));
    await page.waitForFunction(
      (n) => document.querySelector('[data-testid="causal-graph"]')?.getAttribute("data-nodes") === String(n),
      nodes,
    );
    await shot("causality");
    const file = await savePng("causality.png");
    const st = pngStats(file);
    assert.ok(st.width > 400 && st.colors > 50, JSON.stringify(st));
    // The controls left out of the export (help text, buttons, sliders) leave no blank stripe behind.
    const band = tallestBlankBand(file);
    assert.ok(band < 30, `a blank band of ${band} px rows in the export`);
  });

  test("a tab opened again shows the view it left, not a rebuilt one; hidden views are out of the page", async () => {
    // The causality test left the Causality tab open with a graph.
    await page.locator('[data-testid="causal-graph"] canvas').first().waitFor();
    await page.evaluate(() => {
      window.__graph = document.querySelector('[data-testid="causal-graph"]');
      window.__weights = document.querySelector('[data-testid="causal-weights"]');
    });
    await page.click('[data-testid="tab-summary"]');
    await page.locator('[data-testid="grid-image"]').waitFor();
    const hidden = await page.evaluate(() => ({
      views: document.querySelectorAll(".view").length,
      graphInPage: window.__graph.isConnected,
      // A hidden graph gives up its renderer (cytoscape would redraw in a loop of animation frames).
      graphCanvases: window.__graph.querySelectorAll("canvas").length,
    }));
    assert.deepEqual(hidden, { views: 1, graphInPage: false, graphCanvases: 0 });
    await page.click('[data-testid="tab-causal"]');
    await page.locator('[data-testid="causal-weights"]').waitFor();
    assert.ok(
      await page.evaluate(
        () => document.querySelector('[data-testid="causal-weights"]') === window.__weights,
      ),
      "the map canvas is the one drawn before (kept, not redrawn)",
    );
    // The graph gets its renderer back once it is on or near the screen.
    await page.locator('[data-testid="causal-graph"]').scrollIntoViewIfNeeded();
    await page.waitForFunction(() => window.__graph.isConnected && window.__graph.querySelector("canvas"));
    const graphCanvases = page.locator('[data-testid="causal-graph"] canvas');
    let maxColors = 0;
    for (let i = 0; i < (await graphCanvases.count()); i++)
      maxColors = Math.max(maxColors, await canvasColors(graphCanvases.nth(i)));
    assert.ok(maxColors > 3, "the graph is drawn again");
  });

  test("export a run as an archive and import it back through the sidebar", async () => {
    await page.click('[data-testid="tab-summary"]');
    const [dl] = await Promise.all([page.waitForEvent("download"), page.click('[data-testid="export-run"]')]);
    const archive = path.join(work, "run.tar.gz");
    await dl.saveAs(archive);
    assert.equal(fs.readFileSync(archive)[0], 0x1f, "gzip");
    await page.setInputFiles('[data-testid="import-input"]', archive);
    await page.waitForFunction(() => document.querySelectorAll('[data-testid="run-list"] li').length === 2);
    await page.waitForFunction(
      (id) => location.hash.startsWith("#/run/") && !location.hash.includes(id),
      runId,
    );
    const imported = decodeURIComponent(page.url().split("#/run/")[1].split("/")[0]);
    const a = await api(`/api/runs/${runId}`);
    const b = await api(`/api/runs/${imported}`);
    assert.deepEqual(b.tokens, a.tokens);
    assert.deepEqual(b.analyses, a.analyses, "relevancy and causal results travel with the run");
    await page.locator('[data-testid="grid-image"]').waitFor();
    // A badged row ("imported", "found") keeps its date and size on one line (the badge may sit above).
    await page
      .locator(`[data-testid="run-list"] li[data-run="${imported}"] [data-testid="run-source"]`)
      .waitFor();
    const dateLines = await page.evaluate(() =>
      [
        ...document.querySelectorAll('[data-testid="run-list"] li .meta:not([data-testid="import-origin"])'),
      ].map((meta) => {
        const range = document.createRange();
        const badge = meta.querySelector(".badge");
        if (badge) range.setStartAfter(badge);
        else range.setStart(meta, 0);
        range.setEnd(meta, meta.childNodes.length);
        return new Set([...range.getClientRects()].map((r) => Math.round(r.top))).size;
      }),
    );
    assert.deepEqual(dateLines, [1, 1], "dates do not wrap");
    // A broken archive is a readable error.
    const bad = path.join(work, "bad.tar.gz");
    fs.writeFileSync(bad, "not an archive");
    await page.setInputFiles('[data-testid="import-input"]', bad);
    await page.locator('[data-testid="sidebar"] [data-testid="error"]').waitFor();
    assert.match(
      (await page.locator('[data-testid="sidebar"] [data-testid="error"]').textContent()) ?? "",
      /not a readable run archive|not a run archive/,
    );
  });

  test("WebP is sent as is (the server decodes it as Pillow does); a broken image is a readable error", async () => {
    await page.goto(`${ts.base}/#/generate`);
    const webp = await page.evaluate(async () => {
      const c = document.createElement("canvas");
      c.width = 96;
      c.height = 64;
      const g = c.getContext("2d")!;
      g.fillStyle = "#3060c0";
      g.fillRect(0, 0, 96, 64);
      g.fillStyle = "#f0d020";
      g.fillRect(20, 10, 40, 30);
      const blob = await new Promise<Blob>((r) => c.toBlob((b: Blob) => r(b), "image/webp", 0.9));
      return Array.from(new Uint8Array(await blob.arrayBuffer()));
    });
    const file = path.join(work, "shapes.webp");
    fs.writeFileSync(file, Buffer.from(webp));
    assert.equal(Buffer.from(webp).toString("latin1", 8, 12), "WEBP");
    await page.setInputFiles('[data-testid="image-input"]', file);
    await page.locator(".paint-tools >> text=96×64").waitFor();
    await page.fill('[data-testid="max-new-tokens"]', "3");
    await page.click('[data-testid="ask"]');
    await page.locator('[data-testid="answer"][data-state="done"]').waitFor();
    const runs = (await api("/api/runs")).runs;
    const newest = runs[0];
    assert.deepEqual(fs.readFileSync(path.join(ts.dataDir, newest.id, "input.webp")), Buffer.from(webp));
    assert.ok(fs.existsSync(path.join(ts.dataDir, newest.id, "image.png")));
    // Broken image file.
    const broken = path.join(work, "broken.png");
    fs.writeFileSync(broken, "definitely not a png");
    await page.setInputFiles('[data-testid="image-input"]', broken);
    const err = page.locator('[data-testid="image-panel"] [data-testid="error"]');
    await err.waitFor();
    assert.match((await err.textContent()) ?? "", /broken\.png: the browser cannot decode this image/);
  });

  test("a truncated or partly decodable image: a message in place of the picture, nothing to paint or send", async () => {
    await page.goto(`${ts.base}/#/generate`);
    const tools = page.locator('[data-testid="paint-tools"]');
    const err = page.locator('[data-testid="image-panel"] [data-testid="error"]');
    const good = path.join(ROOT, "test/fixtures/llava-tiny-llama/image.png");
    const png = fs.readFileSync(path.join(ROOT, "test/fixtures/pil-decode/formats/interlaced.png"));
    const jpg = fs.readFileSync(path.join(ROOT, "test/fixtures/pil-decode/jpeg/progressive-420.jpg"));
    const noise = new Uint8Array(120 * 80 * 3).map((_, i) => (i * 2654435761) >>> 24);
    const cases: [string, Uint8Array, RegExp][] = [
      [
        "half.png",
        png.subarray(0, png.length >> 1),
        /^half\.png: truncated PNG image: .*use the complete file$/,
      ],
      ["cut.jpg", jpg.subarray(0, jpg.length - 100), /^cut\.jpg: truncated JPEG image/],
      // Every chunk whole, IEND present, but the pixel data stops early: only decoding tells.
      [
        "stops.png",
        pngWithDataCut(Buffer.from(encodePng({ width: 120, height: 80, data: noise })), 0.4),
        /^stops\.png: the browser cannot decode this image/,
      ],
    ];
    for (const [name, bytes, message] of cases) {
      // Each time a good picture is up first: the refused file must replace it, not sit behind it.
      await page.setInputFiles('[data-testid="image-input"]', good);
      await tools.waitFor();
      const file = path.join(work, name);
      fs.writeFileSync(file, bytes);
      await page.setInputFiles('[data-testid="image-input"]', file);
      await err.waitFor();
      assert.match((await err.textContent()) ?? "", message);
      assert.equal(await tools.count(), 0, `${name}: no paint tools`);
      assert.equal(await page.locator(".paint-stack").isVisible(), false, `${name}: no picture`);
      assert.ok(await page.locator('[data-testid="ask"]').isDisabled(), `${name}: nothing to send`);
    }
    // A whole file afterwards loads as usual and clears the message.
    await page.setInputFiles('[data-testid="image-input"]', good);
    await tools.waitFor();
    assert.equal(await err.count(), 0);
  });

  test("a 640-token run: views render without freezing the page", async (t) => {
    const res = await fetch(`${ts.base}/api/generate`, {
      method: "POST",
      body: imageForm(fixtureImage(), {
        prompt: "Describe everything",
        max_new_tokens: "640",
        attn_dtype: "f16",
      }),
    });
    const { job, runId: longId }: any = await res.json();
    const ev = await readJobEvents(ts.base, job.id);
    assert.equal(ev.at(-1)!.type, "done");
    const G = (await api(`/api/runs/${longId}`)).tokens.length;
    assert.ok(G >= 600, `long run has ${G} tokens`);
    const chips = page.locator('[data-testid="map-tokens"] .token');
    // A list below the screen (here: a screen 100 px tall) keeps its first page until it is scrolled near.
    const viewport = page.viewportSize()!;
    await page.setViewportSize({ width: viewport.width, height: 100 });
    try {
      await page.goto(`${ts.base}/#/run/${longId}/maps`);
      await page.locator('[data-testid="head-map"]').first().waitFor();
      const top = await page
        .locator('[data-testid="map-tokens"]')
        .evaluate((el) => el.getBoundingClientRect().top);
      assert.ok(top > 100 + 200, `the list starts ${top} px down, beyond the screen and its margin`);
      await page.waitForTimeout(300);
      assert.equal(await chips.count(), CHIP_PAGE, "only the first page below the screen");
      await page.locator('[data-testid="map-tokens"]').scrollIntoViewIfNeeded();
      await page.waitForFunction(
        (n) => document.querySelectorAll('[data-testid="map-tokens"] .token').length > n,
        CHIP_PAGE,
      );
    } finally {
      await page.setViewportSize(viewport);
    }
    await page.goto(`${ts.base}/#/run/${longId}/maps`);
    await page.evaluate(() => {
      (window as any).__long = [];
      new PerformanceObserver((l: any) => {
        for (const e of l.getEntries()) (window as any).__long.push(e.duration);
      }).observe({ type: "longtask", buffered: true });
    });
    await page.locator('[data-testid="head-map"]').first().waitFor();
    // The token list renders what its box shows (and a little more) first; scrolling it renders the rest,
    // and its "more" button all of it: every token stays reachable.
    const first = await chips.count();
    assert.ok(first >= CHIP_PAGE && first < G, `${first} of ${G} chips rendered at first`);
    await page.locator('[data-testid="map-tokens"]').evaluate((el) => el.scrollTo(0, el.scrollHeight));
    await page.waitForFunction(
      (n) => document.querySelectorAll('[data-testid="map-tokens"] .token').length > n,
      first,
    );
    await page.locator('[data-testid="map-tokens-more"]').click();
    assert.equal(await chips.count(), G);
    assert.deepEqual(
      await chips.allTextContents(),
      (await api(`/api/runs/${longId}`)).tokens.map(tokenLabel),
    );
    assert.equal(await page.locator('[data-testid="map-tokens-more"]').count(), 0);
    // Patch selection and switching views stay responsive.
    // The centre of the picture lies inside the centre crop (the margins are not image tokens).
    await page.locator('[data-testid="patch-canvas"]').click();
    await page.locator('[data-testid="patch-tokens"] .token').first().waitFor();
    await page.locator('[data-testid="patch-tokens-more"]').click();
    assert.equal(await page.locator('[data-testid="patch-tokens"] .token').count(), G);
    await page.click('[data-testid="tab-summary"]');
    await page.locator('[data-testid="grid-image"]').waitFor();
    const t0 = Date.now();
    const rtt = await page.evaluate(
      () => new Promise<number>((r) => requestAnimationFrame(() => r(performance.now()))),
    );
    assert.ok(rtt > 0 && Date.now() - t0 < 1000, "the page answers within a frame");
    const longTasks: number[] = await page.evaluate(() => (window as any).__long);
    const worst = Math.max(0, ...longTasks);
    t.diagnostic(`${G} tokens; ${longTasks.length} long tasks, longest ${worst.toFixed(0)} ms`);
    assert.ok(worst < 1500, `longest main-thread task ${worst.toFixed(0)} ms`);
    await shot("long-run-maps");
  });

  test("bidi controls in a question or answer stay inside its title (isolated) in the sidebar and header", async () => {
    const prompt = "\u202Eevil\u2067 what is shown?";
    const res = await fetch(`${ts.base}/api/generate`, {
      method: "POST",
      body: imageForm(fixtureImage(), { prompt, max_new_tokens: "2" }),
    });
    const { job, runId: id } = (await res.json()) as { job: { id: string }; runId: string };
    assert.equal((await readJobEvents(ts.base, job.id)).at(-1)!.type, "done");
    await page.goto(`${ts.base}/#/run/${id}/summary`);
    await page.locator('[data-testid="run-prompt"]').waitFor();
    await page.locator(`[data-testid="run-list"] li[data-run="${id}"]`).waitFor();
    const titles = await page.evaluate((runId: string) => {
      const li = document.querySelector(`[data-testid="run-list"] li[data-run="${runId}"]`);
      return [
        li.querySelector(".prompt"),
        li.querySelector(".answer"),
        document.querySelector('[data-testid="run-prompt"]'),
        document.querySelector('[data-testid="run-answer"]'),
      ].map((el: { textContent: string; tagName: string; dir: string; matches(s: string): boolean }) => ({
        text: el.textContent,
        bidi: getComputedStyle(el).unicodeBidi,
        dirAuto: el.matches(":dir(ltr), :dir(rtl)") && (el.tagName === "BDI" || el.dir === "auto"),
      }));
    }, id);
    assert.equal(titles[0].text, prompt);
    assert.equal(titles[2].text, prompt);
    for (const t of titles) {
      assert.equal(t.bidi, "isolate", JSON.stringify(t));
      assert.ok(t.dirAuto, `direction from its own text: ${JSON.stringify(t)}`);
    }
  });

  test("interrupted jobs are listed in the sidebar until dismissed; unknown-token warnings are shown", async () => {
    // A data dir whose previous server left a job queued (as after kill -9), served with the shapes model.
    const dataDir = tempDir("e2e-interrupted");
    const seed = RunStore.open(dataDir);
    const jobId = "job-mx000000-0123abcd";
    new SqliteJobJournal(seed.database).queued({
      id: jobId,
      kind: "generate",
      runId: "20260101-000000-abcdef",
      label: "what colour is the star?",
      state: "queued",
      position: 0,
      created_at: new Date().toISOString(),
      result: null,
      error: null,
      request: {
        prompt: "what colour is the star?",
        max_new_tokens: 8,
        image_mode: "default",
        image: { name: "stars.png", bytes: 1234 },
      },
    });
    seed.close();
    const other = await startTestServer({
      dataDir,
      webDir: WEB_DIR,
      modelDir: path.join(ROOT, "models/llava-shapes"),
    });
    try {
      await page.goto(other.base);
      const item = page.locator(`[data-testid="interrupted-jobs"] li[data-job="${jobId}"]`);
      await item.waitFor();
      const text = (await item.textContent()) ?? "";
      assert.match(text, /what colour is the star\?/);
      assert.match(text, /stars\.png/);
      assert.match(text, /interrupted: the server stopped while this job was waiting in the queue/);
      await shot("interrupted-jobs");
      // A question the tokenizer partly cannot read: the warning shows at once, and on the run.
      await page.setInputFiles(
        '[data-testid="image-input"]',
        path.join(ROOT, "test/fixtures/llava-tiny-llama/image.png"),
      );
      await page.fill('[data-testid="question"]', "what 😀 shape");
      await page.fill('[data-testid="max-new-tokens"]', "3");
      await page.click('[data-testid="ask"]');
      const warning = page.locator('[data-testid="question-warning"]');
      await warning.waitFor();
      assert.match(
        (await warning.textContent()) ?? "",
        /1 of the question's 3 tokens are the unknown token <unk>/,
      );
      await page.locator('[data-testid="answer"][data-state="done"]').waitFor();
      await page.click('[data-testid="open-views"] a >> text=Attention summary');
      const runWarning = page.locator('[data-testid="run-warning"]');
      await runWarning.waitFor();
      assert.match((await runWarning.textContent()) ?? "", /unknown token <unk>/);
      // Dismissed: gone from the sidebar and from the server.
      await item.locator('[data-testid="dismiss-job"]').click();
      await page.locator('[data-testid="interrupted-jobs"]').waitFor({ state: "detached" });
      assert.equal((await fetch(`${other.base}/api/jobs/${jobId}`)).status, 404);
    } finally {
      await page.goto(ts.base);
      await other.close();
      fs.rmSync(dataDir, { recursive: true, force: true });
    }
  });

  test("maps are drawn on the original picture: the centre crop's margins stay uncovered", async () => {
    // The 157×100 fixture in the default mode: resized to 175×112 and centre-cropped to 112×112, so about 28
    // original pixels on the left and on the right never reach the model.
    const res = await fetch(`${ts.base}/api/generate`, {
      method: "POST",
      body: imageForm(fixtureImage(), {
        prompt: "What is here?",
        max_new_tokens: "2",
        image_mode: "default",
      }),
    });
    const { job, runId: id } = (await res.json()) as { job: { id: string }; runId: string };
    assert.equal((await readJobEvents(ts.base, job.id)).at(-1)!.type, "done");
    const d = await api(`/api/runs/${id}`);
    assert.deepEqual([d.image.width, d.image.height], [157, 100]);
    const [fx0, fy0, fx1, fy1] = d.image.grids[0].frame;
    assert.ok(
      Math.abs(fx0 - (31 * 157) / 175) < 1e-6 && Math.abs(fx1 - (143 * 157) / 175) < 1e-6,
      `${fx0}…${fx1}`,
    );
    assert.ok(Math.abs(fy0) < 1e-9 && Math.abs(fy1 - 100) < 1e-9);
    await page.goto(`${ts.base}/#/run/${id}/maps`);
    const map = page.locator('[data-testid="head-map"]').first();
    await map.waitFor();
    // Drawn once the picture has loaded: the left margin (picture only) is opaque.
    await page.waitForFunction(() => {
      const c = document.querySelector('[data-testid="head-map"]');
      return c && c.getContext("2d").getImageData(1, c.height >> 1, 1, 1).data[3] > 0;
    });
    // Repaint the original picture alone on a canvas of the same size, the way the map draws it first, and
    // compare: identical in the margins, recoloured inside the crop.
    const cmp = await map.evaluate(
      async (c: HTMLCanvasElement, args: { url: string; x0: number; x1: number }) => {
        const img = new window.Image();
        img.src = args.url;
        await img.decode();
        const ref = document.createElement("canvas");
        ref.width = c.width;
        ref.height = c.height;
        const rc = ref.getContext("2d");
        rc.imageSmoothingEnabled = true;
        rc.drawImage(img, 0, 0, c.width, c.height);
        const a = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
        const b = rc.getImageData(0, 0, c.width, c.height).data;
        const s = c.width / 157;
        const left = Math.floor(args.x0 * s) - 1;
        const right = Math.ceil(args.x1 * s) + 1;
        let marginPixels = 0;
        let marginChanged = 0;
        let insidePixels = 0;
        let insideChanged = 0;
        for (let y = 0; y < c.height; y++)
          for (let x = 0; x < c.width; x++) {
            const i = (y * c.width + x) * 4;
            const diff =
              Math.abs(a[i] - b[i]) + Math.abs(a[i + 1] - b[i + 1]) + Math.abs(a[i + 2] - b[i + 2]);
            if (x < left || x >= right) {
              marginPixels++;
              if (diff > 0) marginChanged++;
            } else if (x > left + 2 && x < right - 3) {
              insidePixels++;
              if (diff > 6) insideChanged++;
            }
          }
        return { w: c.width, h: c.height, marginPixels, marginChanged, insidePixels, insideChanged };
      },
      { url: `/api/runs/${id}/input`, x0: fx0, x1: fx1 },
    );
    assert.equal(Math.round((cmp.w * 100) / 157), cmp.h, "the canvas has the picture's aspect ratio");
    assert.ok(cmp.marginPixels > 2000, JSON.stringify(cmp));
    assert.equal(cmp.marginChanged, 0, `the margins show the picture alone: ${JSON.stringify(cmp)}`);
    assert.ok(cmp.insideChanged > 0.9 * cmp.insidePixels, `the crop is covered: ${JSON.stringify(cmp)}`);
    await shot("map-on-original");
  });

  test("no page errors along the way", () => {
    const real = errors.filter((e) => !/status of 4\d\d/.test(e));
    assert.deepEqual(real, []);
  });
});
