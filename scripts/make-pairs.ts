/**
 * `npm run make:pairs [-- --out DIR --pairs N --seed S]`: writes a CLIP-blind-style pair set of shape scenes
 * (src/shapes/pairs.ts) as a batch dataset: DIR/pairs.jsonl and DIR/images/<id>.png.
 */
import { parseArgs } from "node:util";
import { writePairDataset } from "./pairs-dataset.js";

const USAGE =
  "usage: npm run make:pairs [-- --out DIR (default runs/shapes-pairs) --pairs N (60) --seed S (23)]";

/** Bad arguments end in one line naming the problem and the usage, not a stack trace. */
function fail(message: string): never {
  process.stderr.write(`error: ${message} (see --help)\n`);
  process.exit(1);
}

function readArgs() {
  try {
    return parseArgs({
      options: {
        out: { type: "string", default: "runs/shapes-pairs" },
        pairs: { type: "string", default: "60" },
        seed: { type: "string", default: "23" },
        help: { type: "boolean", short: "h", default: false },
      },
    }).values;
  } catch (e) {
    fail((e as Error).message);
  }
}

const values = readArgs();
if (values.help) {
  process.stdout.write(
    `${USAGE}\nWrites DIR/pairs.jsonl and DIR/images/<id>.png for \`lvlm-interpret batch\`.\n`,
  );
  process.exit(0);
}
const n = Number(values.pairs);
const seed = Number(values.seed);
if (!Number.isInteger(n) || n < 1) fail(`--pairs must be a positive integer (got "${values.pairs}")`);
if (!Number.isInteger(seed) || seed < 0) fail(`--seed must be a non-negative integer (got "${values.seed}")`);
const file = writePairDataset(values.out, n, seed);
process.stderr.write(`${n} pairs (${2 * n} items) written to ${file}\n`);
