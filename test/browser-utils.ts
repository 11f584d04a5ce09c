/** Headless Chromium for the browser tests: whether they can run here, and a page that records the app's errors. */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { type BrowserContext, chromium, type Page } from "playwright-core";
import { CHROMIUM_ARGS, CHROMIUM_PATH } from "../scripts/chromium.js";

/**
 * The `skip` option of a browser suite: false when Chromium is installed, else why not. Under CI a missing
 * Chromium throws instead, so a CI machine without it fails rather than passing with nothing checked.
 */
export function browserSkip(): false | string {
  if (fs.existsSync(CHROMIUM_PATH)) return false;
  if (process.env.CI)
    throw new Error(`${CHROMIUM_PATH} is missing but CI is set: install Debian's chromium package`);
  return `${CHROMIUM_PATH} not found: install Debian's chromium package to run the browser tests`;
}

export interface TestBrowser {
  ctx: BrowserContext;
  page: Page;
  /** Closes the browser and removes its profile folder. */
  close(): Promise<void>;
}

export interface BrowserOptions {
  /** Default timeout of every page action, ms. */
  timeoutMs: number;
  viewport?: { width: number; height: number };
  acceptDownloads?: boolean;
  /** Prefix of the throwaway profile folder's name. */
  profilePrefix?: string;
  /** Where the page's uncaught errors and console errors go (tests assert it stays empty). */
  errors?: string[];
}

/** Chromium with a throwaway profile, and its first page. */
export async function launchBrowser(opts: BrowserOptions): Promise<TestBrowser> {
  const userDir = fs.mkdtempSync(path.join(os.tmpdir(), opts.profilePrefix ?? "lvlm-chromium-"));
  let ctx: BrowserContext;
  try {
    ctx = await chromium.launchPersistentContext(userDir, {
      executablePath: CHROMIUM_PATH,
      headless: true,
      ...(opts.acceptDownloads ? { acceptDownloads: true } : {}),
      viewport: opts.viewport ?? { width: 1400, height: 900 },
      args: [...CHROMIUM_ARGS],
    });
  } catch (e) {
    fs.rmSync(userDir, { recursive: true, force: true });
    throw e;
  }
  const page = ctx.pages()[0] ?? (await ctx.newPage());
  page.setDefaultTimeout(opts.timeoutMs);
  const errors = opts.errors;
  if (errors) {
    page.on("pageerror", (e) => errors.push(`pageerror: ${e.message}`));
    page.on("console", (m) => {
      if (m.type() === "error") errors.push(`console: ${m.text()}`);
    });
  }
  return {
    ctx,
    page,
    close: async () => {
      await ctx.close();
      fs.rmSync(userDir, { recursive: true, force: true });
    },
  };
}

/** What a page callback reads of a canvas (this project compiles without the DOM lib). */
interface CanvasPixels {
  width: number;
  height: number;
  getContext(kind: "2d"): {
    getImageData(x: number, y: number, w: number, h: number): { data: Uint8ClampedArray };
  };
}

/** Distinct colours of a canvas (its backing store), for "non-uniform pixels". */
export async function canvasColors(locator: ReturnType<Page["locator"]>): Promise<number> {
  return locator.evaluate((el) => {
    const c = el as unknown as CanvasPixels;
    const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
    const seen = new Set<number>();
    for (let i = 0; i < d.length; i += 4) {
      seen.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]);
      if (seen.size > 500) break;
    }
    return seen.size;
  });
}
