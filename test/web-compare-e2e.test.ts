/**
 * The compare view in real headless Chromium (Debian's /usr/bin/chromium via playwright-core) against a real
 * server with the llama fixture model: two runs ticked in the sidebar open side by side; the missing relevancy
 * of one is computed from the view; an answer token selected on one side is selected on the other; both maps
 * and their difference are drawn (non-uniform pixels) and the reliance bars carry the server's numbers; a run
 * of the same picture in another image mode, opened by URL, shows why there is no difference. A screenshot
 * goes to $SCREENSHOT_DIR (default dist/screenshots)/compare.png. The server's data folder is a batch's runs
 * folder: its report is browsable (filters; an item's pair opens in the compare view).
 *
 * Skipped (with a message) only when /usr/bin/chromium is missing outside CI; under CI=true it must run.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { after, before, describe, test } from "node:test";
import type { Page } from "playwright-core";
import { browserSkip, canvasColors, launchBrowser, type TestBrowser } from "./browser-utils.js";
import { ROOT, tempDir } from "./fixture-utils.js";
import { fixtureImage, imageForm, readJobEvents, startTestServer, type TestServer } from "./server-utils.js";
import { ensureWebBuild, WEB_DIR } from "./web-build.js";

// Browser globals used inside page.evaluate callbacks (this project compiles without the DOM lib).
declare const document: any;
declare const window: any;
declare const performance: any;
type HTMLCanvasElement = any;

const SHOTS = path.resolve(ROOT, process.env.SCREENSHOT_DIR ?? "dist/screenshots");
const skip = browserSkip();

let ts: TestServer;
let browser: TestBrowser;
let page: Page;
/** A batch folder: the server serves its runs/ (the data folder), report.json lies beside it. */
const batchDir = tempDir("e2e-batch");

async function api(p: string): Promise<any> {
  const r = await fetch(`${ts.base}${p}`);
  assert.equal(r.status, 200, `${p}: ${r.status}`);
  return r.json();
}

async function makeRun(prompt: string, imageMode: string, relevancy: boolean): Promise<string> {
  const res = await fetch(`${ts.base}/api/generate`, {
    method: "POST",
    body: imageForm(fixtureImage(), { prompt, max_new_tokens: "5", image_mode: imageMode }),
  });
  const body = (await res.json()) as { job: { id: string }; runId: string };
  assert.equal((await readJobEvents(ts.base, body.job.id)).at(-1)!.type, "done");
  if (relevancy) {
    const r = await fetch(`${ts.base}/api/runs/${body.runId}/relevancy`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ mode: "exact", tokens: "all" }),
    });
    const { job } = (await r.json()) as { job: { id: string } };
    assert.equal((await readJobEvents(ts.base, job.id)).at(-1)!.type, "done");
  }
  return body.runId;
}

/** Index of the selected chip in a token list (−1: none). */
async function selectedToken(list: string): Promise<number> {
  return page.evaluate((sel: string) => {
    const chips = [...document.querySelectorAll(`[data-testid="${sel}"] .token`)];
    return chips.findIndex((c: any) => c.classList.contains("selected"));
  }, list);
}

describe("compare view in headless Chromium", { skip }, () => {
  const errors: string[] = [];
  let a: string;
  let b: string;
  let padded: string;

  before(async () => {
    ensureWebBuild();
    ts = await startTestServer({ webDir: WEB_DIR, dataDir: path.join(batchDir, "runs") });
    a = await makeRun("What color is the big square?", "default", true);
    b = await makeRun("What shape is in the corner?", "default", false);
    padded = await makeRun("What color is the big square?", "pad", true);
    const item = (id: string, pair: string | null, correct: boolean | null, share: number) => ({
      id,
      index: 0,
      pair,
      run: `runs/${id}`,
      question: `question of ${id}`,
      answer: "red",
      expected: correct === null ? null : "red",
      correct,
      reliance: { token: 0, lvlm: 0.5, image_share: share },
    });
    fs.writeFileSync(
      path.join(batchDir, "report.json"),
      JSON.stringify({
        format: "lvlm-interpret-batch/1",
        complete: true,
        items: [item(a, "p1", true, 0.8), item(b, "p1", false, 0.3), item(padded, null, null, 0.6)],
        aggregates: { accuracy: 0.5, pairs: { n: 1, both: 0, one: 1, none: 0, accuracy: 0 } },
      }),
    );
    browser = await launchBrowser({ timeoutMs: 60_000, errors });
    page = browser.page;
    await page.goto(ts.base);
  });

  after(async () => {
    await browser?.close();
    await ts?.close();
    fs.rmSync(batchDir, { recursive: true, force: true });
  });

  test("tick two runs → Compare; compute the missing relevancy; tokens follow; maps, difference, reliance", async (t) => {
    const compare = page.locator('[data-testid="compare-selected"]');
    assert.equal(await compare.getAttribute("aria-disabled"), "true", "nothing ticked: disabled");
    await page.locator(`[data-run="${a}"] [data-testid="pick-run"]`).check();
    await page.locator(`[data-run="${b}"] [data-testid="pick-run"]`).check();
    assert.equal(await compare.getAttribute("aria-disabled"), "false");
    await compare.click();
    await page.waitForFunction(() => window.location.hash.startsWith("#/compare/"));
    assert.equal(new URL(page.url()).hash, `#/compare/${a}/${b}`);

    // Run B has no relevancy yet: the view offers to compute it, and then shows the comparison.
    await page.locator('[data-testid="cmp-missing-b"]').waitFor();
    assert.equal(await page.locator('[data-testid="cmp-missing-a"]').count(), 0);
    await page.click('[data-testid="cmp-compute-b"]');
    await page.locator('[data-testid="cmp-reliance-b"]').waitFor();
    assert.equal(await page.locator('[data-testid="cmp-missing-b"]').count(), 0);

    // Select answer token 2 on side A: side B follows, and the maps are for token 2.
    await page.locator('[data-testid="cmp-tokens-a"] .token').nth(2).click();
    await page.waitForFunction(
      () =>
        document.querySelectorAll('[data-testid="cmp-tokens-b"] .token')[2]?.classList.contains("selected") &&
        document.querySelector('[data-testid="cmp-difference"] h3')?.textContent.endsWith("token 2"),
    );
    assert.equal(await selectedToken("cmp-tokens-a"), 2);
    assert.equal(await selectedToken("cmp-tokens-b"), 2);
    // And back from side B (timed from the click to the difference panel of the new token, for the report).
    const t0 = await page.evaluate(() => performance.now());
    await page.locator('[data-testid="cmp-tokens-b"] .token').nth(1).click();
    await page.waitForFunction(
      () => document.querySelector('[data-testid="cmp-difference"] h3')?.textContent.endsWith("token 1"),
      undefined,
      { polling: "raf" },
    );
    const t1 = await page.evaluate(() => performance.now());
    t.diagnostic(`token switch in the compare view (click → new maps): ${(t1 - t0).toFixed(0)} ms`);
    assert.equal(await selectedToken("cmp-tokens-a"), 1);

    const view = await api(`/api/compare?a=${a}&b=${b}&mode=exact&token=1`);
    assert.equal(view.sameImage, true);
    for (const id of ["cmp-map-a", "cmp-map-b", "cmp-diff"]) {
      const c = page.locator(`[data-testid="${id}"]`);
      await page.waitForFunction(
        (t: string) =>
          document.querySelector(`[data-testid="${t}"]`)?.getContext("2d").getImageData(1, 1, 1, 1).data[3] >
          0,
        id,
      );
      assert.ok((await canvasColors(c)) > 50, `${id} is drawn`);
    }
    for (const side of ["a", "b"] as const) {
      const bar = page.locator(`[data-testid="cmp-reliance-${side}"]`);
      assert.equal(Number(await bar.getAttribute("data-image-share")), view[side].share.imageShare);
      assert.equal(Number(await bar.getAttribute("data-reliance")), view[side].reliance);
      const w = await bar
        .locator(".reliance-image")
        .evaluate(
          (el: any) => el.getBoundingClientRect().width / el.parentElement.getBoundingClientRect().width,
        );
      assert.ok(Math.abs(w - view[side].share.imageShare) < 0.02, `bar ${side}: ${w}`);
    }
    assert.match((await page.locator(".panel h3").first().textContent())!, /Same picture, two questions/);
    fs.mkdirSync(SHOTS, { recursive: true });
    await page.evaluate(() => window.scrollTo(0, 0));
    await page.screenshot({ path: path.join(SHOTS, "compare.png"), fullPage: true });
  });

  test("opened by URL: the same picture in another image mode has no difference map, and says why", async () => {
    await page.goto(`${ts.base}/#/compare/${a}/${padded}`);
    const why = page.locator('[data-testid="cmp-no-diff"]');
    await why.waitFor();
    assert.match((await why.textContent())!, /different image tokens|different places/);
    assert.match((await page.locator(".panel h3").first().textContent())!, /Same picture, same question/);
    assert.ok((await canvasColors(page.locator('[data-testid="cmp-map-b"]'))) > 50);
    await page.goto(`${ts.base}/#/compare/${a}/nope`);
    await page.locator("text=run B: no run with id").waitFor();
  });

  test("batch report: filters for wrong answers, low image share, failed pairs; an item's pair opens in compare", async () => {
    await page.goto(`${ts.base}/#/generate`);
    await page.click('[data-testid="open-batch"]');
    const rows = page.locator('[data-testid="batch-items"] tbody tr');
    await rows.first().waitFor();
    assert.equal(await rows.count(), 3);
    assert.match((await page.locator('[data-testid="batch-summary"]').textContent())!, /accuracy 50%/);
    await page.check('[data-testid="batch-wrong"]');
    assert.deepEqual(await rows.evaluateAll((r: any[]) => r.map((x) => x.dataset.item)), [b]);
    await page.uncheck('[data-testid="batch-wrong"]');
    await page.check('[data-testid="batch-failed-pairs"]');
    assert.deepEqual(await rows.evaluateAll((r: any[]) => r.map((x) => x.dataset.item)), [a, b]);
    await page.uncheck('[data-testid="batch-failed-pairs"]');
    await page.check('[data-testid="batch-low"]');
    await page.fill('[data-testid="batch-low-value"]', "0.7");
    assert.deepEqual(await rows.evaluateAll((r: any[]) => r.map((x) => x.dataset.item)), [b, padded]);
    await page.uncheck('[data-testid="batch-low"]');
    await page.locator(`[data-item="${a}"] [data-testid="batch-compare"]`).click();
    await page.locator('[data-testid="cmp-reliance-b"]').waitFor();
    assert.equal(new URL(page.url()).hash, `#/compare/${a}/${b}`);
  });

  test("no page errors along the way", () => {
    const real = errors.filter((e) => !/status of 4\d\d/.test(e));
    assert.deepEqual(real, []);
  });
});
