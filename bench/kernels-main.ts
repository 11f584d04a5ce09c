/**
 * node dist/bench/kernels-main.js [--quick] [--json] [--dtypes=F32,BF16,F16] [--crossover]
 * Prints linear GFLOPS for the TS and ORT kernels (table, or JSON with --json). --crossover instead prints
 * per-call microseconds on small shapes, the data behind the "auto" routing threshold.
 */
import type { WeightMatrix } from "../src/kernels/types.js";
import { benchCrossover, benchKernels } from "./kernels.js";

const args = new Set(process.argv.slice(2));
const json = args.has("--json");
const quick = args.has("--quick");
const dtypeArg = process.argv.find((a) => a.startsWith("--dtypes="));
const dtypes = dtypeArg
  ? dtypeArg
      .slice("--dtypes=".length)
      .split(",")
      .map((d) => {
        const u = d.trim().toUpperCase();
        if (u !== "F32" && u !== "F16" && u !== "BF16")
          throw new Error(`unknown dtype "${d}" (F32, F16, BF16)`);
        return u as WeightMatrix["dtype"];
      })
  : undefined;

if (args.has("--crossover")) {
  const rows = await benchCrossover();
  if (json) {
    console.log(JSON.stringify(rows, null, 2));
  } else {
    console.log("     m      k      n       flops    ts µs   ort µs");
    for (const r of rows) {
      console.log(
        `${pad(r.m, 6)} ${pad(r.k, 6)} ${pad(r.n, 6)} ${pad(r.flops, 11)} ${pad(r.tsUs.toFixed(1), 8)} ${pad(r.ortUs.toFixed(1), 8)}`,
      );
    }
  }
} else {
  if (!json) console.log("impl            m      k      n   GFLOPS");
  const rows = await benchKernels({
    quick,
    dtypes,
    onRow: json
      ? undefined
      : (r) =>
          console.log(
            `${r.impl.padEnd(10)} ${pad(r.m, 6)} ${pad(r.k, 6)} ${pad(r.n, 6)} ${pad(r.gflops.toFixed(2), 8)}`,
          ),
  });
  if (json) console.log(JSON.stringify(rows, null, 2));
}

function pad(v: number | string, width: number): string {
  return String(v).padStart(width);
}
