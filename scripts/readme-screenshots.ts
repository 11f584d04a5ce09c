/**
 * `npm run screenshots`: the README's pictures of the embedded default model at work. Starts the real server
 * on the default model, asks it a question about a held-out synthetic scene in headless Chromium, computes
 * the relevancy of the answer, and saves screenshots of the answer and relevancy views to docs/screenshots,
 * and of the relevancy map's faithfulness check (deletion / insertion curves against random maps); then
 * asks a second question about the same scene and saves the two runs side by side (the compare view).
 *
 *   npm run screenshots -- [--seed 4242] [--index 3] [--out docs/screenshots]
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { chromium } from "playwright-core";
import { defaultModelDir, PROJECT_ROOT } from "../src/cli/default-model.js";
import { encodePng } from "../src/hf/image-decode.js";
import { buildServer } from "../src/server/app.js";
import { sample, sampleConversation } from "../src/shapes/dataset.js";
import { CHROMIUM_ARGS, CHROMIUM_PATH } from "./chromium.js";

// Browser global used inside page callbacks (this project compiles without the DOM lib).
declare const window: { scrollTo(x: number, y: number): void };

function flag(name: string, dflt: string): string {
  const i = process.argv.indexOf(name);
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1]! : dflt;
}

async function main(): Promise<void> {
  const seed = Number(flag("--seed", "4242"));
  const index = Number(flag("--index", "3"));
  const outDir = path.resolve(flag("--out", path.join(PROJECT_ROOT, "docs/screenshots")));
  if (!fs.existsSync(CHROMIUM_PATH))
    throw new Error(`${CHROMIUM_PATH} not found: install Debian's chromium package`);
  const s = sample(seed, index);
  const work = fs.mkdtempSync(path.join(os.tmpdir(), "lvlm-shots-"));
  const imageFile = path.join(work, "scene.png");
  fs.writeFileSync(imageFile, encodePng(s.scene.image));
  const server = await buildServer({
    modelDir: defaultModelDir(),
    dataDir: path.join(work, "data"),
    kernels: "auto",
    webDir: path.join(PROJECT_ROOT, "dist/web"),
  });
  const base = await server.app.listen({ port: 0, host: "127.0.0.1" });
  const userDir = path.join(work, "chromium");
  const ctx = await chromium.launchPersistentContext(userDir, {
    executablePath: CHROMIUM_PATH,
    headless: true,
    viewport: { width: 1400, height: 900 },
    args: [...CHROMIUM_ARGS],
  });
  try {
    const page = ctx.pages()[0] ?? (await ctx.newPage());
    page.setDefaultTimeout(120_000);
    const shot = async (name: string) => {
      await page.evaluate(() => window.scrollTo(0, 0));
      await page.screenshot({ path: path.join(outDir, `${name}.png`), fullPage: true });
      process.stderr.write(`wrote ${path.join(outDir, `${name}.png`)}\n`);
    };
    fs.mkdirSync(outDir, { recursive: true });
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
    await ctx.close();
    await server.close();
    fs.rmSync(work, { recursive: true, force: true });
  }
}

await main();
