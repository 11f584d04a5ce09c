/**
 * The faithfulness view in real headless Chromium (Debian's /usr/bin/chromium via playwright-core) against a
 * real server on the default model: a map without its inputs is refused with the server's message; a check
 * run from the view draws both curves (non-uniform pixels) whose plotted values — read back from the Chart.js
 * instances — and AUCs equal the library's, computed here independently with checkFaithfulness. A screenshot
 * goes to $SCREENSHOT_DIR (default dist/screenshots)/faithfulness.png.
 *
 * Skipped (with a message) only when /usr/bin/chromium is missing outside CI; under CI=true it must run.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { after, before, describe, test } from "node:test";
import type { Page } from "playwright-core";
import { defaultModelDir } from "../src/cli/default-model.js";
import { encodePng } from "../src/hf/image-decode.js";
import { checkFaithfulness, type FaithfulnessResult } from "../src/interpret/faithfulness/index.js";
import { createKernels } from "../src/kernels/index.js";
import { sample } from "../src/shapes/dataset.js";
import { browserSkip, launchBrowser, type TestBrowser } from "./browser-utils.js";
import { ROOT } from "./fixture-utils.js";
import { imageForm, readJobEvents, startTestServer, type TestServer } from "./server-utils.js";
import { ensureWebBuild, WEB_DIR } from "./web-build.js";

// The browser's canvas as used inside page.evaluate (this project compiles without the DOM lib).
interface HTMLCanvasElement {
  width: number;
  height: number;
  getContext(kind: "2d"): {
    getImageData(x: number, y: number, w: number, h: number): { data: Uint8ClampedArray };
  };
}

const SHOTS = path.resolve(ROOT, process.env.SCREENSHOT_DIR ?? "dist/screenshots");
const skip = browserSkip();

let ts: TestServer;
let browser: TestBrowser;
let page: Page;

describe("faithfulness view in headless Chromium", { skip }, () => {
  const errors: string[] = [];
  let runId: string;

  before(async () => {
    ensureWebBuild();
    ts = await startTestServer({ webDir: WEB_DIR, modelDir: defaultModelDir() });
    const s = sample(4242, 3);
    const res = await fetch(`${ts.base}/api/generate`, {
      method: "POST",
      body: imageForm(encodePng(s.scene.image), { prompt: s.qa.question, max_new_tokens: "4" }),
    });
    const body = (await res.json()) as { job: { id: string }; runId: string };
    assert.equal((await readJobEvents(ts.base, body.job.id)).at(-1)!.type, "done");
    runId = body.runId;
    browser = await launchBrowser({ timeoutMs: 120_000, errors });
    page = browser.page;
  });

  after(async () => {
    await browser?.close();
    await ts?.close();
    if (ts) fs.rmSync(ts.dataDir, { recursive: true, force: true });
  });

  test("a map the run lacks is refused with the server's message", async () => {
    await page.goto(`${ts.base}/#/run/${runId}/faithfulness`);
    await page.locator('[data-testid="faith-empty"]').waitFor();
    await page.selectOption('[data-testid="faith-kind"]', "rel");
    assert.equal(await page.locator('[data-testid="faith-spec"]').textContent(), "rel:exact:llm");
    await page.click('[data-testid="faith-run"]');
    const err = page.locator('[data-testid="job"][data-state="failed"] [data-testid="error"]');
    await err.waitFor();
    assert.match((await err.textContent())!, /no llm relevancy \(exact\) computed.*lvlm-interpret relevancy/);
  });

  test("a check run from the view plots the library's curves and AUCs", async () => {
    await page.selectOption('[data-testid="faith-kind"]', "attn");
    await page.selectOption('[data-testid="faith-head"]', "mean");
    await page.fill('[data-testid="faith-steps"]', "5");
    await page.fill('[data-testid="faith-seeds"]', "2");
    const spec = (await page.locator('[data-testid="faith-spec"]').textContent())!;
    assert.equal(spec, "attn:3:mean");
    await page.click('[data-testid="faith-run"]');
    await page.locator('[data-testid="job"][data-state="done"]').waitFor();
    await page.locator('[data-testid="faith-result"]').waitFor();

    // The library, on its own: same run, token, map and settings; ts kernels like the test server's.
    const kernels = await createKernels("ts");
    let lib: FaithfulnessResult;
    try {
      ({ result: lib } = await checkFaithfulness(ts.server.store.dir(runId), {
        token: 0,
        map: spec,
        steps: 5,
        seeds: 2,
        kernels,
      }));
    } finally {
      await kernels.dispose();
    }
    for (const which of ["deletion", "insertion"] as const) {
      const chart = page.locator(`[data-testid="faith-chart-${which}"]`);
      // A chart below the screen is built in an idle period after the view's paint.
      await page.locator(`[data-testid="faith-chart-${which}"][data-series]`).waitFor();
      const series = JSON.parse((await chart.getAttribute("data-series"))!) as { data: number[] }[];
      assert.deepEqual(series[0].data, lib.curves[which], `${which}: plotted map curve`);
      assert.deepEqual(series[1].data, lib.random[which], `${which}: plotted random curve`);
      const box = page.locator(`[data-testid="faith-${which}"]`);
      assert.equal(Number(await box.getAttribute("data-auc")), lib.curves[`${which}_auc`]);
      assert.equal(Number(await box.getAttribute("data-random-auc")), lib.random[`${which}_auc`]);
      assert.match(
        (await box.textContent())!,
        new RegExp(`AUC ${lib.curves[`${which}_auc`].toFixed(3)} vs random`),
      );
      const colors = await chart.evaluate((el) => {
        const c = el as HTMLCanvasElement;
        const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
        const seen = new Set<number>();
        for (let i = 0; i < d.length; i += 4) seen.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]);
        return seen.size;
      });
      assert.ok(colors > 10, `${which}: the chart is drawn (${colors} colours)`);
    }
    fs.mkdirSync(SHOTS, { recursive: true });
    await page.screenshot({ path: path.join(SHOTS, "faithfulness.png"), fullPage: true });
  });

  test("no page errors along the way", () => {
    const real = errors.filter((e) => !/status of 4\d\d/.test(e));
    assert.deepEqual(real, []);
  });
});
