/**
 * `bench:answers`: held-out answer accuracy of a shapes model by question kind and number of objects in the
 * scene — the table of docs/training.md. Accuracy is the training log's: the first answer token is the argmax
 * after the inference prompt (one question per image, as inference sees it).
 *
 *   node dist/bench/answers.js [--model DIR] [--n N] [--seed S] [--json]
 */
import { defaultModelDir } from "../src/cli/default-model.js";
import { createKernels } from "../src/kernels/index.js";
import { loadModel } from "../src/models/registry.js";
import { sample } from "../src/shapes/dataset.js";
import { QUESTION_KINDS } from "../src/shapes/questions.js";
import { makeExample } from "../src/train/examples.js";
import { trainingStep } from "../src/train/step.js";
import { count, flag } from "./args.js";

const n = count("--n", 600);
const seed = count("--seed", 9001);
const modelDir = flag("--model") ?? defaultModelDir();
const json = process.argv.includes("--json");

const model = loadModel(modelDir);
const kernels = await createKernels("auto");
// cells[kind][objects] = [correct, asked]
const cells = new Map<string, Map<number, [number, number]>>();
let correct = 0;
for (let i = 0; i < n; i++) {
  const { qa, scene } = sample(seed, i);
  const ok = (await trainingStep(model, kernels, makeExample(model, { seed }, i), null)).firstTokenCorrect;
  const byObjects = cells.get(qa.kind) ?? new Map<number, [number, number]>();
  cells.set(qa.kind, byObjects);
  const cell = byObjects.get(scene.objects.length) ?? [0, 0];
  byObjects.set(scene.objects.length, cell);
  cell[1]++;
  if (ok) {
    cell[0]++;
    correct++;
  }
  if (!json && process.stderr.isTTY) process.stderr.write(`\r${i + 1}/${n}`);
}
if (!json && process.stderr.isTTY) process.stderr.write("\n");
await kernels.dispose();
model.close();

const objectCounts = [...new Set([...cells.values()].flatMap((m) => [...m.keys()]))].sort((a, b) => a - b);
if (json) {
  const byKind = Object.fromEntries(
    [...cells].map(([kind, m]) => [
      kind,
      Object.fromEntries([...m].map(([k, [c, t]]) => [k, { correct: c, n: t }])),
    ]),
  );
  console.log(JSON.stringify({ model: modelDir, n, seed, accuracy: correct / n, byKind }, null, 1));
} else {
  console.log(`${modelDir}: ${correct}/${n} = ${((100 * correct) / n).toFixed(1)} % (seed ${seed})\n`);
  console.log(`| kind | ${objectCounts.map((k) => `${k} object${k > 1 ? "s" : ""}`).join(" | ")} | all |`);
  console.log(`|---|${objectCounts.map(() => "---|").join("")}---|`);
  for (const kind of QUESTION_KINDS) {
    const m = cells.get(kind);
    if (!m) continue;
    const row = objectCounts.map((k) => {
      const c = m.get(k);
      return c ? `${c[0]}/${c[1]}` : "–";
    });
    const [c, t] = [...m.values()].reduce(([a, b], [x, y]) => [a + x, b + y], [0, 0]);
    console.log(`| ${kind} | ${row.join(" | ")} | ${((100 * c) / t).toFixed(0)} % |`);
  }
}
