/**
 * The report's plots: vega-lite specs compiled to vega, rendered headlessly to SVG (no canvas needed), then
 * to PNG with sharp.
 */
import * as path from "node:path";
import sharp from "sharp";
import * as vega from "vega";
import * as vl from "vega-lite";
import type { ItemRecord } from "./report.js";
import { writeFileAtomic } from "./report.js";

type Spec = vl.TopLevelSpec;

export async function renderPng(spec: Spec): Promise<Buffer> {
  const view = new vega.View(vega.parse(vl.compile(spec).spec), { renderer: "none" });
  const svg = await view.toSVG(2);
  view.finalize();
  return sharp(Buffer.from(svg)).flatten({ background: "#ffffff" }).png().toBuffer();
}

function rows(items: ItemRecord[]) {
  return items
    .filter((i) => i.correct !== null && i.reliance)
    .map((i, k) => ({
      id: i.id,
      k,
      answer: i.correct ? "right" : "wrong",
      lvlm: i.reliance!.lvlm,
      image_share: i.reliance!.image_share,
    }));
}

const COLORS = { domain: ["right", "wrong"], range: ["#2e7d32", "#c62828"] };

export function relianceBySpec(items: ItemRecord[]): Spec {
  const values = rows(items);
  const panel = (field: "image_share" | "lvlm", title: string) => ({
    title,
    width: 360,
    height: 120,
    layer: [
      {
        mark: { type: "boxplot" as const, extent: "min-max" as const, opacity: 0.35, size: 40 },
        encoding: {
          y: { field: "answer", type: "nominal" as const, title: null },
          x: {
            field,
            type: "quantitative" as const,
            scale: { domain: [0, 1] },
            title: "reliance on the image",
          },
          color: { field: "answer", type: "nominal" as const, scale: COLORS, legend: null },
        },
      },
      {
        mark: { type: "circle" as const, size: 30, opacity: 0.7 },
        transform: [{ calculate: "((datum.k * 0.6180339887) % 1) * 24 - 12", as: "jitter" }],
        encoding: {
          y: { field: "answer", type: "nominal" as const, title: null },
          yOffset: { field: "jitter", type: "quantitative" as const, scale: { domain: [-30, 30] } },
          x: { field, type: "quantitative" as const },
          color: { field: "answer", type: "nominal" as const, scale: COLORS, legend: null },
          tooltip: [{ field: "id" }],
        },
      },
    ],
  });
  return {
    $schema: "https://vega.github.io/schema/vega-lite/v5.json",
    data: { values },
    vconcat: [
      panel("image_share", "Image share of relevancy mass (first answer token)"),
      panel("lvlm", "LVLM-Interpret image reliance (first answer token)"),
    ],
    config: { font: "DejaVu Sans" },
  } as Spec;
}

/** Histogram of the image share per group, as the share of the group's answers (the groups differ in size). */
export function shareHistogramSpec(items: ItemRecord[]): Spec {
  return {
    $schema: "https://vega.github.io/schema/vega-lite/v5.json",
    title: "Image share of relevancy, by correctness (share of each group)",
    data: { values: rows(items) },
    width: 420,
    height: 200,
    transform: [
      // 1.0 belongs to the last bin, not one of its own past the axis.
      { calculate: "min(datum.image_share, 0.99999)", as: "share" },
      { bin: { extent: [0, 1], step: 0.05 }, field: "share", as: ["bin0", "bin1"] },
      { aggregate: [{ op: "count", as: "count" }], groupby: ["bin0", "bin1", "answer"] },
      { joinaggregate: [{ op: "sum", field: "count", as: "group" }], groupby: ["answer"] },
      { calculate: "datum.count / datum.group", as: "fraction" },
    ],
    mark: { type: "bar", opacity: 0.6, binSpacing: 0 },
    encoding: {
      x: {
        field: "bin0",
        bin: { binned: true, step: 0.05 },
        type: "quantitative",
        title: "image share",
        scale: { domain: [0, 1] },
      },
      x2: { field: "bin1" },
      y: {
        field: "fraction",
        type: "quantitative",
        title: "share of the group's answers",
        stack: null,
        axis: { format: "%" },
      },
      color: { field: "answer", type: "nominal", scale: COLORS, title: "answer" },
    },
    config: { font: "DejaVu Sans" },
  } as Spec;
}

/** Writes the plots under `dir/plots/`; returns their paths relative to `dir`. */
export async function writePlots(dir: string, items: ItemRecord[]): Promise<string[]> {
  if (rows(items).length === 0) return [];
  const out: string[] = [];
  const plots: [string, Spec][] = [
    ["reliance-by-correctness.png", relianceBySpec(items)],
    ["image-share-histogram.png", shareHistogramSpec(items)],
  ];
  const { mkdirSync } = await import("node:fs");
  mkdirSync(path.join(dir, "plots"), { recursive: true });
  for (const [name, spec] of plots) {
    writeFileAtomic(path.join(dir, "plots", name), await renderPng(spec));
    out.push(`plots/${name}`);
  }
  return out;
}
