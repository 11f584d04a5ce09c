/**
 * A LLaVA-NeXT run in real headless Chromium (Debian's /usr/bin/chromium via playwright-core) against a real
 * server with the tiny NeXT fixture: the vit relevancy map (per tile, combined on the picture) is drawn on the
 * original 16:9 picture, and the view toggle (combined / base / high-res), shown only for pictures seen as a
 * base view plus tiles, redraws it. A screenshot goes to $SCREENSHOT_DIR (default dist/screenshots).
 *
 * Skipped (with a message) only when /usr/bin/chromium is missing outside CI; under CI=true it must run.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { after, before, describe, test } from "node:test";
import type { Page } from "playwright-core";
import { browserSkip, launchBrowser, type TestBrowser } from "./browser-utils.js";
import { ROOT } from "./fixture-utils.js";
import { imageForm, readJobEvents, startTestServer, type TestServer } from "./server-utils.js";
import { ensureWebBuild, WEB_DIR } from "./web-build.js";

/** The canvas as page callbacks see it (this project compiles without the DOM lib). */
interface HTMLCanvasElement {
  width: number;
  height: number;
  getContext(kind: "2d"): {
    getImageData(x: number, y: number, w: number, h: number): { data: Uint8ClampedArray };
  };
}

const NEXT = path.join(ROOT, "test/fixtures/llava-next-tiny-clip-llama");
const SHOTS = path.resolve(ROOT, process.env.SCREENSHOT_DIR ?? "dist/screenshots");
const skip = browserSkip();

let ts: TestServer;
let browser: TestBrowser;
let page: Page;

async function post(p: string, body: unknown): Promise<{ job: { id: string } }> {
  const r = await fetch(`${ts.base}${p}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  assert.equal(r.status, 202, `${p}: ${r.status}`);
  return (await r.json()) as { job: { id: string } };
}

/** The canvas's pixels (its backing store) as one string, and how many distinct colours it has. */
async function pixels(locator: ReturnType<Page["locator"]>): Promise<{ key: string; colors: number }> {
  return locator.evaluate((el) => {
    const c = el as HTMLCanvasElement;
    const d = c.getContext("2d")!.getImageData(0, 0, c.width, c.height).data;
    const seen = new Set<number>();
    let h = 0;
    for (let i = 0; i < d.length; i += 4) {
      seen.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]);
      h = (Math.imul(h, 31) + d[i] * 65536 + d[i + 1] * 256 + d[i + 2]) | 0;
    }
    return { key: `${c.width}x${c.height}:${h}`, colors: seen.size };
  });
}

describe("a LLaVA-NeXT run's maps on the picture in headless Chromium", { skip }, () => {
  let runId: string;

  before(async () => {
    ensureWebBuild();
    ts = await startTestServer({ webDir: WEB_DIR, modelDir: NEXT });
    const res = await fetch(`${ts.base}/api/generate`, {
      method: "POST",
      body: imageForm(fs.readFileSync(path.join(NEXT, "image.png")), {
        prompt: "What is in the picture?",
        max_new_tokens: "3",
      }),
    });
    const body = (await res.json()) as { job: { id: string }; runId: string };
    assert.equal((await readJobEvents(ts.base, body.job.id)).at(-1)!.type, "done");
    runId = body.runId;
    const { job } = await post(`/api/runs/${runId}/relevancy`, { mode: "exact", kind: "vit" });
    const events = await readJobEvents(ts.base, job.id);
    assert.equal(events.at(-1)!.type, "done", JSON.stringify(events.at(-1)));
    browser = await launchBrowser({
      timeoutMs: 60_000,
      viewport: { width: 1300, height: 900 },
      profilePrefix: "lvlm-next-e2e-",
    });
    page = browser.page;
  });

  after(async () => {
    await browser?.close();
    await ts?.close();
  });

  test("the vit map is drawn on the 16:9 picture, and the view toggle redraws base, high-res and combined", async () => {
    await page.goto(`${ts.base}/#/run/${runId}/relevancy`);
    await page.selectOption('[data-testid="rel-kind"]', "vit");
    const map = page.locator('[data-testid="rel-map"]').first();
    await map.waitFor();
    // The original picture's aspect ratio (160×90), not a square.
    const size = await map.evaluate((el) => [
      (el as HTMLCanvasElement).width,
      (el as HTMLCanvasElement).height,
    ]);
    assert.ok(Math.abs(size[0] / size[1] - 160 / 90) < 0.02, `canvas ${size}`);
    const toggle = page.locator('[data-testid="map-layer"]');
    assert.equal(await toggle.inputValue(), "combined");
    const seen = new Map<string, string>();
    const first = await pixels(map);
    assert.ok(first.colors > 20, `combined: ${first.colors} colours`);
    seen.set(first.key, "combined");
    for (const layer of ["base", "high-res"]) {
      await toggle.selectOption(layer);
      // The canvas is redrawn after the settings change: wait (up to the page timeout) for new pixels.
      const deadline = Date.now() + 10_000;
      let p = await pixels(map);
      while (seen.has(p.key) && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 20));
        p = await pixels(map);
      }
      assert.ok(!seen.has(p.key), `${layer} draws the same pixels as ${seen.get(p.key)}`);
      assert.ok(p.colors > 20, `${layer}: ${p.colors} colours`);
      seen.set(p.key, layer);
    }
    await toggle.selectOption("combined");
    fs.mkdirSync(SHOTS, { recursive: true });
    await page.screenshot({ path: path.join(SHOTS, "next-relevancy.png"), fullPage: true });
  });
});
