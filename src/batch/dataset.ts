/**
 * Batch datasets: a JSONL file (one item per line) or MMVP's folder layout (Questions.csv + 1.jpg … N.jpg).
 * Reading validates everything up front, so a malformed line fails before the model loads; every error is
 * one line naming the file and line.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { parseCsv } from "./csv.js";
import { DatasetError } from "./dataset-error.js";

export { DatasetError };

export interface BatchItem {
  id: string;
  /** Position in the dataset. */
  index: number;
  /** Absolute image path. */
  imagePath: string;
  /** The image as the dataset names it (relative to the dataset's folder). */
  image: string;
  question: string;
  answer: string | null;
  options: string[] | null;
  pair: string | null;
  /** [x0, y0, x1, y1] in the original image's pixels. */
  box: [number, number, number, number] | null;
}

export interface Dataset {
  path: string;
  kind: "jsonl" | "mmvp";
  items: BatchItem[];
}

/**
 * Ids become run folder names: the server's run-id form (A-Za-z0-9_-, starting with a letter or digit, at most
 * 80 characters), so `serve --data DIR/runs` indexes them like any other run and no id can leave runs/.
 */
export function safeId(id: string): string {
  const s = id.replace(/[^A-Za-z0-9_-]/g, "_");
  return (/^[A-Za-z0-9]/.test(s) ? s : `x${s}`).slice(0, 80);
}

export function readDataset(file: string): Dataset {
  let st: fs.Stats;
  try {
    st = fs.statSync(file);
  } catch {
    throw new DatasetError(
      `${file}: dataset not found (pass a JSONL file or an MMVP folder with Questions.csv)`,
    );
  }
  const ds = st.isDirectory() ? readMmvp(file) : readJsonl(file);
  const seen = new Map<string, number>();
  for (const it of ds.items) {
    const prev = seen.get(it.id);
    if (prev !== undefined)
      throw new DatasetError(
        `${file}: item ${it.index + 1} has the id "${it.id}" of item ${prev + 1} (ids must be unique after replacing characters outside A-Za-z0-9_- and cutting to 80)`,
      );
    seen.set(it.id, it.index);
  }
  return ds;
}

function isStr(v: unknown): v is string {
  return typeof v === "string";
}

export function readJsonl(file: string): Dataset {
  const dir = path.dirname(path.resolve(file));
  const text = fs.readFileSync(file, "utf8");
  const items: BatchItem[] = [];
  const lines = text.split(/\r?\n/);
  for (let ln = 0; ln < lines.length; ln++) {
    const line = lines[ln].trim();
    if (!line) continue;
    const where = `${file}:${ln + 1}`;
    let o: Record<string, unknown>;
    try {
      o = JSON.parse(line);
    } catch (e) {
      throw new DatasetError(
        `${where}: not valid JSON (${(e as Error).message}); each line must be one JSON object`,
      );
    }
    if (o === null || typeof o !== "object" || Array.isArray(o))
      throw new DatasetError(`${where}: expected a JSON object {id, image, question, …}`);
    const need = (k: string) => {
      const v = o[k];
      if (!isStr(v) && typeof v !== "number")
        throw new DatasetError(`${where}: "${k}" is missing or not a string`);
      return String(v);
    };
    const id = need("id");
    const image = need("image");
    const question = need("question");
    if (!question.trim()) throw new DatasetError(`${where}: "question" is empty`);
    let answer: string | null = null;
    if (o.answer !== undefined && o.answer !== null) {
      if (!isStr(o.answer) && typeof o.answer !== "number")
        throw new DatasetError(`${where}: "answer" must be a string`);
      answer = String(o.answer);
    }
    let options: string[] | null = null;
    if (o.options !== undefined && o.options !== null) {
      if (!Array.isArray(o.options) || o.options.length < 2 || !o.options.every(isStr))
        throw new DatasetError(`${where}: "options" must be a list of at least two strings`);
      options = o.options;
    }
    let pair: string | null = null;
    if (o.pair !== undefined && o.pair !== null) {
      if (!isStr(o.pair) && typeof o.pair !== "number")
        throw new DatasetError(`${where}: "pair" must be a string`);
      pair = String(o.pair);
    }
    let box: BatchItem["box"] = null;
    if (o.box !== undefined && o.box !== null) {
      const b = o.box;
      if (
        !Array.isArray(b) ||
        b.length !== 4 ||
        !b.every((v) => typeof v === "number" && Number.isFinite(v)) ||
        b[2] <= b[0] ||
        b[3] <= b[1]
      )
        throw new DatasetError(`${where}: "box" must be [x0, y0, x1, y1] with x1 > x0 and y1 > y0`);
      box = b as [number, number, number, number];
    }
    const imagePath = path.resolve(dir, image);
    if (!fs.existsSync(imagePath))
      throw new DatasetError(`${where}: image "${image}" not found (paths are relative to the JSONL file)`);
    items.push({
      id: safeId(id),
      index: items.length,
      imagePath,
      image,
      question,
      answer,
      options,
      pair,
      box,
    });
  }
  if (items.length === 0) throw new DatasetError(`${file}: no items (expected one JSON object per line)`);
  return { path: file, kind: "jsonl", items };
}

/** MMVP's options cell: "(a) Open (b) Closed" → ["Open", "Closed"]. */
export function parseMmvpOptions(cell: string): string[] | null {
  const parts = cell.split(/\(([a-z])\)/i);
  const out: string[] = [];
  for (let i = 2; i < parts.length; i += 2) out.push(parts[i].trim());
  return out.length >= 2 ? out : null;
}

export function readMmvp(dir: string): Dataset {
  const csv = path.join(dir, "Questions.csv");
  if (!fs.existsSync(csv))
    throw new DatasetError(`${dir}: a dataset folder must hold MMVP's Questions.csv (or pass a JSONL file)`);
  const rows = parseCsv(fs.readFileSync(csv, "utf8"), csv);
  if (rows.length === 0) throw new DatasetError(`${csv}: empty (expected a header line)`);
  const header = rows[0].map((h) => h.trim());
  const col = (name: string) => {
    const i = header.findIndex((h) => h.toLowerCase() === name.toLowerCase());
    if (i < 0)
      throw new DatasetError(
        `${csv}:1: column "${name}" missing (expected Index, Question, Options, Correct Answer)`,
      );
    return i;
  };
  const ci = col("Index");
  const cq = col("Question");
  const co = col("Options");
  const ca = col("Correct Answer");
  const items: BatchItem[] = [];
  for (let r = 1; r < rows.length; r++) {
    const row = rows[r];
    if (row.length === 1 && row[0].trim() === "") continue;
    const where = `${csv}:${r + 1}`;
    const cell = (i: number, name: string) => {
      const v = row[i];
      if (v === undefined) throw new DatasetError(`${where}: column "${name}" missing on this line`);
      return v.trim();
    };
    const idx = cell(ci, "Index");
    if (!/^\d+$/.test(idx) || Number(idx) < 1)
      throw new DatasetError(`${where}: Index "${idx}" is not a positive integer`);
    const n = Number(idx);
    const image = `${n}.jpg`;
    const imagePath = path.resolve(dir, image);
    if (!fs.existsSync(imagePath))
      throw new DatasetError(`${where}: image ${image} not found next to Questions.csv`);
    const question = cell(cq, "Question");
    if (!question) throw new DatasetError(`${where}: Question is empty`);
    const options = parseMmvpOptions(cell(co, "Options"));
    const answer = cell(ca, "Correct Answer") || null;
    items.push({
      id: String(n),
      index: items.length,
      imagePath,
      image,
      question,
      answer,
      options,
      pair: String(Math.ceil(n / 2)),
      box: null,
    });
  }
  if (items.length === 0) throw new DatasetError(`${csv}: no questions`);
  return { path: dir, kind: "mmvp", items };
}
