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
import { PROJECT_ROOT } from "../src/cli/default-model.js";
import { flag, openSession, requireChromium } from "./screenshot-session.js";

/** Follows a job's event stream to its end; throws unless it is "done". */
async function finish(base: string, jobId: string): Promise<void> {
  const res = await fetch(`${base}/api/jobs/${jobId}/events`);
  const text = await res.text();
  const types = [...text.matchAll(/^event: (\w+)/gm)].map((m) => m[1]);
  if (types.at(-1) !== "done")
    throw new Error(`job ${jobId} ended with ${types.at(-1)}: ${text.slice(-300)}`);
}

interface Shot {
  /** docs/screenshots/<name>.png */
  name: string;
  fixture: string;
  /** The vision-side relevancy kind to compute and show. */
  kind: "vit" | "chain";
  /** Base / high-res layer toggle, where the run has both. */
  layer?: "combined";
}

const SHOTS: Shot[] = [
  { name: "next-relevancy", fixture: "llava-next-tiny-clip-llama", kind: "vit", layer: "combined" },
  { name: "qwen2-vl-relevancy", fixture: "qwen2-vl-tiny", kind: "chain" },
];

async function shoot(shot: Shot, outDir: string): Promise<void> {
  const modelDir = path.join(PROJECT_ROOT, "test/fixtures", shot.fixture);
  const work = fs.mkdtempSync(path.join(os.tmpdir(), "lvlm-family-shots-"));
  const session = await openSession({
    modelDir,
    dataDir: path.join(work, "data"),
    userDir: path.join(work, "chromium"),
    outDir,
    kernels: "ts",
    viewport: { width: 1300, height: 900 },
    timeoutMs: 60_000,
  });
  const { base, page } = session;
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
    await page.goto(`${base}/#/run/${gen.runId}/relevancy`);
    await page.selectOption('[data-testid="rel-kind"]', shot.kind);
    await page.selectOption('[data-testid="rel-by"]', "token");
    await page.locator('[data-testid="rel-map"]').first().waitFor();
    if (shot.layer) await page.selectOption('[data-testid="map-layer"]', shot.layer);
    await session.shot(shot.name);
  } finally {
    await session.close();
    fs.rmSync(work, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const outDir = path.resolve(flag("--out", path.join(PROJECT_ROOT, "docs/screenshots")));
  requireChromium();
  for (const shot of SHOTS) await shoot(shot, outDir);
}

await main();
