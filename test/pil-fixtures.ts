/** Pillow's reference decodes (test/fixtures/pil-decode): what Hugging Face's `load_image` gives for each input. */
import * as fs from "node:fs";
import * as path from "node:path";
import { PNG } from "pngjs";
import type { RgbImage } from "../src/hf/image-decode.js";
import { ROOT } from "./fixture-utils.js";

export const PIL_DIR = path.join(ROOT, "test/fixtures/pil-decode");

export interface PilCase {
  width: number;
  height: number;
  pil_decoded: string;
}

/** The cases of one set: `jpeg` (Pillow 9.4's six JPEGs) or `formats` (Pillow 12.3: WebP, CMYK, PNG kinds…). */
export function pilCases(set: "jpeg" | "formats"): [string, PilCase][] {
  const json = JSON.parse(fs.readFileSync(path.join(PIL_DIR, set, "cases.json"), "utf8"));
  return Object.entries((set === "formats" ? json.cases : json) as Record<string, PilCase>);
}

/** A file of the fixture folder, e.g. `jpeg/q90-420.jpg`. */
export function pilFixture(rel: string): Buffer {
  return fs.readFileSync(path.join(PIL_DIR, rel));
}

/** A reference decode (a plain 8-bit RGB PNG without colour key) as RGB, e.g. `jpeg/q90-420.pil.png`. */
export function pilReference(rel: string): RgbImage {
  const png = PNG.sync.read(pilFixture(rel));
  const data = new Uint8Array(png.width * png.height * 3);
  for (let i = 0; i < png.width * png.height; i++) data.set(png.data.subarray(i * 4, i * 4 + 3), i * 3);
  return { width: png.width, height: png.height, data };
}

/** How many values differ, and by how much at most. */
export function differences(a: RgbImage, b: RgbImage): { count: number; max: number } {
  let count = 0;
  let max = 0;
  for (let i = 0; i < a.data.length; i++) {
    const d = Math.abs(a.data[i] - b.data[i]);
    if (d) count++;
    if (d > max) max = d;
  }
  return { count, max };
}
