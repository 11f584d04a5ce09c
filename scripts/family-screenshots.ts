/**
 * The README's pictures of the newer model families, each from its tiny fixture (random weights — they show
 * the geometry, not a meaningful explanation) answering a question about its non-square picture:
 * - LLaVA-NeXT (test/fixtures/llava-next-tiny-clip-llama, 160×90): the vision-tower (vit) relevancy per tower
 *   pass (base view + 2×3 tiles), drawn as the combined map;
 * - Qwen2-VL (test/fixtures/qwen2-vl-tiny, 125×88): the chain relevancy through the patch sequence, on the
 *   merged tokens' boxes.
 *
 *   npx tsc -p tsconfig.json && npm run build:web && node dist/scripts/family-screenshots.js [--out docs/screenshots]
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { chromium } from "playwright-core";
import { PROJECT_ROOT } from "../src/cli/default-model.js";
import { buildServer } from "../src/server/app.js";
import { CHROMIUM_ARGS, CHROMIUM_PATH } from "./chromium.js";

declare const window: { scrollTo(x: number, y: number): void };

function flag(name: string, dflt: string): string {
  const i = process.argv.indexOf(name);
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1]! : dflt;
}

/** Follows a job's event stream to its end; throws unless it is "done". */
async function finish(base: string, jobId: string): Promise<void> {
  const res = await fetch(`${base}/api/jobs/${jobId}/events`);
  const text = await res.text();
  const types = [...text.matchAll(/^event: (\w+)/gm)].map((m) => m[1]);
  if (types.at(-1) !== "done")
    throw new Error(`job ${jobId} ended with ${types.at(-1)}: ${text.slice(-300)}`);
}

interface Shot {
  file: string;
  fixture: string;
  /** The vision-side relevancy kind to compute and show. */
  kind: "vit" | "chain";
  /** Base / high-res layer toggle, where the run has both. */
  layer?: "combined";
}

const SHOTS: Shot[] = [
  { file: "next-relevancy.png", fixture: "llava-next-tiny-clip-llama", kind: "vit", layer: "combined" },
  { file: "qwen2-vl-relevancy.png", fixture: "qwen2-vl-tiny", kind: "chain" },
];

async function shoot(shot: Shot, outDir: string): Promise<void> {
  const modelDir = path.join(PROJECT_ROOT, "test/fixtures", shot.fixture);
  const work = fs.mkdtempSync(path.join(os.tmpdir(), "lvlm-family-shots-"));
  const server = await buildServer({
    modelDir,
    dataDir: path.join(work, "data"),
    kernels: "ts",
    webDir: path.join(PROJECT_ROOT, "dist/web"),
  });
  const base = await server.app.listen({ port: 0, host: "127.0.0.1" });
  const ctx = await chromium.launchPersistentContext(path.join(work, "chromium"), {
    executablePath: CHROMIUM_PATH,
    headless: true,
    viewport: { width: 1300, height: 900 },
    args: [...CHROMIUM_ARGS],
  });
  try {
    const fd = new FormData();
    fd.append("prompt", "What is in the picture?");
    fd.append("max_new_tokens", "3");
    const png = fs.readFileSync(path.join(modelDir, "image.png"));
    fd.append("image", new Blob([png], { type: "image/png" }), "image.png");
    const gen = (await (await fetch(`${base}/api/generate`, { method: "POST", body: fd })).json()) as {
      job: { id: string };
      runId: string;
    };
    await finish(base, gen.job.id);
    const rel = (await (
      await fetch(`${base}/api/runs/${gen.runId}/relevancy`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ mode: "exact", kind: shot.kind, tokens: "all" }),
      })
    ).json()) as { job: { id: string } };
    await finish(base, rel.job.id);
    const page = ctx.pages()[0] ?? (await ctx.newPage());
    page.setDefaultTimeout(60_000);
    await page.goto(`${base}/#/run/${gen.runId}/relevancy`);
    await page.selectOption('[data-testid="rel-kind"]', shot.kind);
    await page.selectOption('[data-testid="rel-by"]', "token");
    await page.locator('[data-testid="rel-map"]').first().waitFor();
    if (shot.layer) await page.selectOption('[data-testid="map-layer"]', shot.layer);
    await page.evaluate(() => window.scrollTo(0, 0));
    fs.mkdirSync(outDir, { recursive: true });
    const file = path.join(outDir, shot.file);
    await page.screenshot({ path: file, fullPage: true });
    process.stderr.write(`wrote ${file}\n`);
  } finally {
    await ctx.close();
    await server.close();
    fs.rmSync(work, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const outDir = path.resolve(flag("--out", path.join(PROJECT_ROOT, "docs/screenshots")));
  if (!fs.existsSync(CHROMIUM_PATH))
    throw new Error(`${CHROMIUM_PATH} not found: install Debian's chromium package`);
  for (const shot of SHOTS) await shoot(shot, outDir);
}

await main();
