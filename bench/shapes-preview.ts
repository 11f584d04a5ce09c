/**
 * node dist/bench/shapes-preview.js OUT.png [--seed=N] [--start=I] [--count=16] [--no-boxes]
 * Writes a contact sheet of shapes-dataset samples: each image at 2× with its question, answer, kind and target
 * object (whose visible box is outlined unless --no-boxes).
 */
import * as fs from "node:fs";
import { encodePng, type RgbImage } from "../src/hf/image-decode.js";
import { type ShapesSample, sample } from "../src/shapes/dataset.js";

// 5×7 bitmap font (text is drawn upper-case).
const FONT: Record<string, string[]> = {
  A: [" ### ", "#   #", "#   #", "#####", "#   #", "#   #", "#   #"],
  B: ["#### ", "#   #", "#   #", "#### ", "#   #", "#   #", "#### "],
  C: [" ### ", "#   #", "#    ", "#    ", "#    ", "#   #", " ### "],
  D: ["#### ", "#   #", "#   #", "#   #", "#   #", "#   #", "#### "],
  E: ["#####", "#    ", "#    ", "#### ", "#    ", "#    ", "#####"],
  F: ["#####", "#    ", "#    ", "#### ", "#    ", "#    ", "#    "],
  G: [" ### ", "#   #", "#    ", "# ###", "#   #", "#   #", " ####"],
  H: ["#   #", "#   #", "#   #", "#####", "#   #", "#   #", "#   #"],
  I: [" ### ", "  #  ", "  #  ", "  #  ", "  #  ", "  #  ", " ### "],
  J: ["  ###", "   # ", "   # ", "   # ", "   # ", "#  # ", " ##  "],
  K: ["#   #", "#  # ", "# #  ", "##   ", "# #  ", "#  # ", "#   #"],
  L: ["#    ", "#    ", "#    ", "#    ", "#    ", "#    ", "#####"],
  M: ["#   #", "## ##", "# # #", "# # #", "#   #", "#   #", "#   #"],
  N: ["#   #", "#   #", "##  #", "# # #", "#  ##", "#   #", "#   #"],
  O: [" ### ", "#   #", "#   #", "#   #", "#   #", "#   #", " ### "],
  P: ["#### ", "#   #", "#   #", "#### ", "#    ", "#    ", "#    "],
  Q: [" ### ", "#   #", "#   #", "#   #", "# # #", "#  # ", " ## #"],
  R: ["#### ", "#   #", "#   #", "#### ", "# #  ", "#  # ", "#   #"],
  S: [" ####", "#    ", "#    ", " ### ", "    #", "    #", "#### "],
  T: ["#####", "  #  ", "  #  ", "  #  ", "  #  ", "  #  ", "  #  "],
  U: ["#   #", "#   #", "#   #", "#   #", "#   #", "#   #", " ### "],
  V: ["#   #", "#   #", "#   #", "#   #", "#   #", " # # ", "  #  "],
  W: ["#   #", "#   #", "#   #", "# # #", "# # #", "# # #", " # # "],
  X: ["#   #", "#   #", " # # ", "  #  ", " # # ", "#   #", "#   #"],
  Y: ["#   #", "#   #", " # # ", "  #  ", "  #  ", "  #  ", "  #  "],
  Z: ["#####", "    #", "   # ", "  #  ", " #   ", "#    ", "#####"],
  "0": [" ### ", "#   #", "#  ##", "# # #", "##  #", "#   #", " ### "],
  "1": ["  #  ", " ##  ", "  #  ", "  #  ", "  #  ", "  #  ", " ### "],
  "2": [" ### ", "#   #", "    #", "   # ", "  #  ", " #   ", "#####"],
  "3": ["#####", "   # ", "  #  ", "   # ", "    #", "#   #", " ### "],
  "4": ["   # ", "  ## ", " # # ", "#  # ", "#####", "   # ", "   # "],
  "5": ["#####", "#    ", "#### ", "    #", "    #", "#   #", " ### "],
  "6": ["  ## ", " #   ", "#    ", "#### ", "#   #", "#   #", " ### "],
  "7": ["#####", "    #", "   # ", "  #  ", " #   ", " #   ", " #   "],
  "8": [" ### ", "#   #", "#   #", " ### ", "#   #", "#   #", " ### "],
  "9": [" ### ", "#   #", "#   #", " ####", "    #", "   # ", " ##  "],
  "?": [" ### ", "#   #", "    #", "   # ", "  #  ", "     ", "  #  "],
  ",": ["     ", "     ", "     ", "     ", " ##  ", "  #  ", " #   "],
  ".": ["     ", "     ", "     ", "     ", "     ", " ##  ", " ##  "],
  ":": ["     ", " ##  ", " ##  ", "     ", " ##  ", " ##  ", "     "],
  "-": ["     ", "     ", "     ", "#####", "     ", "     ", "     "],
  "=": ["     ", "     ", "#####", "     ", "#####", "     ", "     "],
  "/": ["    #", "   # ", "   # ", "  #  ", " #   ", " #   ", "#    "],
  "(": ["   # ", "  #  ", " #   ", " #   ", " #   ", "  #  ", "   # "],
  ")": [" #   ", "  #  ", "   # ", "   # ", "   # ", "  #  ", " #   "],
  ">": [" #   ", "  #  ", "   # ", "    #", "   # ", "  #  ", " #   "],
};
const ADVANCE = 6;
const LINE = 9;

const SCALE = 2;
const PAD = 8;

function setPixel(img: RgbImage, x: number, y: number, rgb: readonly number[]) {
  if (x < 0 || y < 0 || x >= img.width || y >= img.height) return;
  const p = (y * img.width + x) * 3;
  img.data[p] = rgb[0]!;
  img.data[p + 1] = rgb[1]!;
  img.data[p + 2] = rgb[2]!;
}

function drawText(img: RgbImage, x: number, y: number, text: string, rgb: readonly number[]) {
  let cx = x;
  for (const ch of text.toUpperCase()) {
    const g = FONT[ch];
    if (g) {
      for (let gy = 0; gy < 7; gy++) {
        for (let gx = 0; gx < 5; gx++) if (g[gy]![gx] === "#") setPixel(img, cx + gx, y + gy, rgb);
      }
    }
    cx += ADVANCE;
  }
}

function wrap(text: string, maxChars: number): string[] {
  const lines: string[] = [];
  let cur = "";
  for (const word of text.split(" ")) {
    if (cur && cur.length + 1 + word.length > maxChars) {
      lines.push(cur);
      cur = word;
    } else cur = cur ? `${cur} ${word}` : word;
  }
  if (cur) lines.push(cur);
  return lines;
}

function drawSample(sheet: RgbImage, ox: number, oy: number, s: ShapesSample, boxes: boolean, cellW: number) {
  const { scene, qa } = s;
  const n = scene.size;
  for (let y = 0; y < n * SCALE; y++) {
    for (let x = 0; x < n * SCALE; x++) {
      const p = (Math.floor(y / SCALE) * n + Math.floor(x / SCALE)) * 3;
      setPixel(sheet, ox + x, oy + y, [
        scene.image.data[p]!,
        scene.image.data[p + 1]!,
        scene.image.data[p + 2]!,
      ]);
    }
  }
  if (boxes && qa.target_object !== null) {
    const [x0, y0, x1, y1] = scene.objects[qa.target_object]!.box;
    const L = ox + x0 * SCALE - 1;
    const T = oy + y0 * SCALE - 1;
    const R = ox + x1 * SCALE;
    const B = oy + y1 * SCALE;
    for (let x = L; x <= R; x++) {
      const c = (x >> 2) % 2 === 0 ? [255, 255, 255] : [0, 0, 0];
      setPixel(sheet, x, T, c);
      setPixel(sheet, x, B, c);
    }
    for (let y = T; y <= B; y++) {
      const c = (y >> 2) % 2 === 0 ? [255, 255, 255] : [0, 0, 0];
      setPixel(sheet, L, y, c);
      setPixel(sheet, R, y, c);
    }
  }
  const maxChars = Math.floor(cellW / ADVANCE);
  const objs = scene.objects.map((o) => `${o.color} ${o.shape}`).join(", ");
  const lines = [
    `#${s.index} ${scene.backgroundPattern}`,
    ...wrap(`q: ${qa.question}`, maxChars),
    `a: ${qa.answer} (${qa.kind}, obj ${qa.target_object ?? "-"})`,
    ...wrap(`= ${objs}`, maxChars),
  ];
  let ty = oy + n * SCALE + 4;
  for (const line of lines) {
    drawText(sheet, ox, ty, line, line.startsWith("a:") ? [160, 0, 0] : [20, 20, 20]);
    ty += LINE;
  }
}

function arg(name: string, fallback: number): number {
  const a = process.argv.find((x) => x.startsWith(`--${name}=`));
  if (!a) return fallback;
  const v = Number(a.slice(name.length + 3));
  if (!Number.isSafeInteger(v) || v < 0) throw new Error(`--${name} must be a non-negative integer`);
  return v;
}

const out = process.argv.slice(2).find((a) => !a.startsWith("--"));
if (!out) {
  console.error(
    "usage: node dist/bench/shapes-preview.js OUT.png [--seed=N] [--start=I] [--count=16] [--no-boxes]",
  );
  process.exit(2);
}
const seed = arg("seed", 0);
const start = arg("start", 0);
const count = Math.max(1, arg("count", 16));
const boxes = !process.argv.includes("--no-boxes");

const samples = Array.from({ length: count }, (_, i) => sample(seed, start + i));
const cols = Math.min(4, count);
const rows = Math.ceil(count / cols);
const cellW = samples[0]!.scene.size * SCALE;
const cellH = cellW + 4 + LINE * 8;
const sheet: RgbImage = {
  width: PAD + cols * (cellW + PAD),
  height: PAD + rows * (cellH + PAD),
  data: new Uint8Array((PAD + cols * (cellW + PAD)) * (PAD + rows * (cellH + PAD)) * 3).fill(255),
};
samples.forEach((s, i) => {
  drawSample(
    sheet,
    PAD + (i % cols) * (cellW + PAD),
    PAD + Math.floor(i / cols) * (cellH + PAD),
    s,
    boxes,
    cellW,
  );
});
fs.writeFileSync(out, encodePng(sheet));
for (const s of samples)
  console.log(`${s.index}\t${s.qa.kind}\t${s.qa.question}\t${s.qa.answer}\t${s.qa.target_object}`);
console.log(`wrote ${out} (${sheet.width}×${sheet.height})`);
