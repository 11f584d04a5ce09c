/**
 * The setup the README screenshot scripts share: the real server on a model and a data folder, headless
 * Chromium on it, and a full-page screenshot helper. One place, so every picture is taken the same way.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { type BrowserContext, chromium, type Page } from "playwright-core";
import { PROJECT_ROOT } from "../src/cli/default-model.js";
import type { KernelChoice } from "../src/kernels/types.js";
import { buildServer } from "../src/server/app.js";
import { CHROMIUM_ARGS, CHROMIUM_PATH } from "./chromium.js";

// Browser global used inside page callbacks (this project compiles without the DOM lib).
declare const window: { scrollTo(x: number, y: number): void };

/** `--name value` from the command line, or the default. */
export function flag(name: string, dflt: string): string {
  const i = process.argv.indexOf(name);
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1]! : dflt;
}

export function requireChromium(): void {
  if (!fs.existsSync(CHROMIUM_PATH))
    throw new Error(`${CHROMIUM_PATH} not found: install Debian's chromium package`);
}

export interface ScreenshotSession {
  base: string;
  page: Page;
  /** Scrolls to the top and saves the whole page as outDir/<name>.png. */
  shot(name: string): Promise<void>;
  close(): Promise<void>;
}

export async function openSession(opts: {
  modelDir: string;
  dataDir: string;
  /** Chromium's profile folder (a scratch folder the caller removes). */
  userDir: string;
  outDir: string;
  kernels: KernelChoice;
  viewport: { width: number; height: number };
  timeoutMs: number;
}): Promise<ScreenshotSession> {
  const server = await buildServer({
    modelDir: opts.modelDir,
    dataDir: opts.dataDir,
    kernels: opts.kernels,
    webDir: path.join(PROJECT_ROOT, "dist/web"),
  });
  let ctx: BrowserContext;
  let base: string;
  try {
    base = await server.app.listen({ port: 0, host: "127.0.0.1" });
    ctx = await chromium.launchPersistentContext(opts.userDir, {
      executablePath: CHROMIUM_PATH,
      headless: true,
      viewport: opts.viewport,
      args: [...CHROMIUM_ARGS],
    });
  } catch (e) {
    await server.close();
    throw e;
  }
  const page = ctx.pages()[0] ?? (await ctx.newPage());
  page.setDefaultTimeout(opts.timeoutMs);
  return {
    base,
    page,
    async shot(name) {
      fs.mkdirSync(opts.outDir, { recursive: true });
      const file = path.join(opts.outDir, `${name}.png`);
      await page.evaluate(() => window.scrollTo(0, 0));
      await page.screenshot({ path: file, fullPage: true });
      process.stderr.write(`wrote ${file}\n`);
    },
    async close() {
      await ctx.close();
      await server.close();
    },
  };
}
