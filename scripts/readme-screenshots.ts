/**
 * `npm run screenshots`: the README's pictures of the embedded default model at work. Starts the real server
 * on the default model, asks it a question about a held-out synthetic scene in headless Chromium, computes
 * the relevancy of the answer, and saves screenshots of the answer and relevancy views to docs/screenshots,
 * and of the relevancy map's faithfulness check (deletion / insertion curves against random maps); then
 * asks a second question about the same scene and saves the two runs side by side (the compare view).
 * Last, a small batch (3 CLIP-blind-style pairs, exact relevancy) run through the library's runBatch and its
 * runs folder served: the batch report view.
 *
 *   npm run screenshots -- [--seed 4242] [--index 3] [--out docs/screenshots]
 *
 * The README's other web-app pictures (generate, attention-summary, attention-maps, relevancy, causality,
 * export-causality) are test/web-e2e.test.ts's screenshots on the llava-tiny-llama fixture:
 * `SCREENSHOT_DIR=DIR node --test dist/test/web-e2e.test.js`, then copy those six from DIR.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { runBatch } from "../src/batch/run-batch.js";
import { defaultModelDir, PROJECT_ROOT } from "../src/cli/default-model.js";
import { encodePng } from "../src/hf/image-decode.js";
import { sample, sampleConversation } from "../src/shapes/dataset.js";
import { writePairDataset } from "./pairs-dataset.js";
import { flag, openSession, requireChromium } from "./screenshot-session.js";

const VIEWPORT = { width: 1400, height: 900 };

/** The generate, relevancy, faithfulness and compare views of two questions about one held-out scene. */
async function shootRuns(work: string, outDir: string, seed: number, index: number): Promise<void> {
  const s = sample(seed, index);
  const imageFile = path.join(work, "scene.png");
  fs.writeFileSync(imageFile, encodePng(s.scene.image));
  const session = await openSession({
    modelDir: defaultModelDir(),
    dataDir: path.join(work, "data"),
    userDir: path.join(work, "chromium"),
    outDir,
    kernels: "auto",
    viewport: VIEWPORT,
    timeoutMs: 120_000,
  });
  const { base, page, shot } = session;
  try {
    await page.goto(base);
    await page.setInputFiles('[data-testid="image-input"]', imageFile);
    await page.locator('[data-testid="paint-canvas"]').waitFor();
    await page.fill('[data-testid="question"]', s.qa.question);
    await page.click('[data-testid="ask"]');
    await page.locator('[data-testid="answer"][data-state="done"]').waitFor();
    process.stderr.write(`asked "${s.qa.question}" (truth: ${s.qa.answer})\n`);
    await shot("shapes-generate");
    await page.click('[data-testid="open-views"] >> text=Relevancy');
    await page.click('[data-testid="rel-compute-all"]');
    await page.locator('[data-testid="job"][data-state="done"]').waitFor();
    await page.locator('[data-testid="rel-map"]').first().waitFor();
    await shot("shapes-relevancy");

    // Is the relevancy map faithful? Deletion / insertion curves of the answer against random maps.
    const asked = page.url().split("#/run/")[1].split("/")[0];
    await page.goto(`${base}/#/run/${asked}/faithfulness`);
    await page.selectOption('[data-testid="faith-kind"]', "rel");
    await page.click('[data-testid="faith-run"]');
    await page.locator('[data-testid="faith-result"]').waitFor();
    await shot("faithfulness");

    // The same picture, a second question: both runs side by side.
    const second = sampleConversation(seed, index, 2).qas[1];
    if (second) {
      const first = decodeURIComponent(page.url().split("#/run/")[1].split("/")[0]);
      await page.goto(`${base}/#/generate`);
      await page.setInputFiles('[data-testid="image-input"]', imageFile);
      await page.locator('[data-testid="paint-canvas"]').waitFor();
      await page.fill('[data-testid="question"]', second.question);
      await page.click('[data-testid="ask"]');
      await page.locator('[data-testid="answer"][data-state="done"]').waitFor();
      process.stderr.write(`asked "${second.question}" (truth: ${second.answer})\n`);
      const runs = (await (await fetch(`${base}/api/runs`)).json()) as { runs: { id: string }[] };
      const other = runs.runs.find((r) => r.id !== first)!.id;
      await page.goto(`${base}/#/compare/${first}/${other}`);
      await page.click('[data-testid="cmp-compute-b"]');
      await page.locator('[data-testid="cmp-reliance-b"]').waitFor();
      await shot("compare");
    }
  } finally {
    await session.close();
  }
}

/** A small batch of shape pairs (exact LLM relevancy) served as its runs folder: the batch report view. */
async function shootBatch(work: string, outDir: string): Promise<void> {
  const dataset = writePairDataset(path.join(work, "pairs"), 3, 23);
  // The folder's name is the batch's name in the report view.
  const out = path.join(work, "shapes-pairs");
  await runBatch({
    dataset,
    out,
    modelDir: defaultModelDir(),
    relevancy: "exact",
    vision: [],
    causal: false,
    maxNewTokens: 16,
    kernels: "auto",
    onItem: (r, done, total) => process.stderr.write(`batch item ${done}/${total}: ${r.id}\n`),
  });
  const session = await openSession({
    modelDir: defaultModelDir(),
    dataDir: path.join(out, "runs"),
    userDir: path.join(work, "chromium-batch"),
    outDir,
    kernels: "auto",
    viewport: VIEWPORT,
    timeoutMs: 60_000,
  });
  try {
    await session.page.goto(`${session.base}/#/batch`);
    await session.page.locator('[data-testid="batch-items"]').waitFor();
    await session.shot("batch");
  } finally {
    await session.close();
  }
}

async function main(): Promise<void> {
  const seed = Number(flag("--seed", "4242"));
  const index = Number(flag("--index", "3"));
  const outDir = path.resolve(flag("--out", path.join(PROJECT_ROOT, "docs/screenshots")));
  requireChromium();
  const work = fs.mkdtempSync(path.join(os.tmpdir(), "lvlm-shots-"));
  try {
    await shootRuns(work, outDir, seed, index);
    await shootBatch(work, outDir);
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

await main();
