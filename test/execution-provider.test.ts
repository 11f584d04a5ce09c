/**
 * The switch that puts onnxruntime's sessions on another execution provider (`LVLM_INTERPRET_EP`): the value
 * is checked in one line, "cpu" is the default, and a GPU provider either runs the same graphs (the product
 * then equals the CPU's) or, where it cannot start (no GPU, no provider library), fails at kernel creation in
 * one line that names it and the way back to the CPU.
 */
import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import { EXECUTION_PROVIDERS } from "../src/contracts/lists.js";
import { OrtKernels, TsKernels } from "../src/kernels/index.js";
import { executionProviderFromEnv } from "../src/kernels/ort-kernels.js";
import type { WeightMatrix } from "../src/kernels/types.js";
import { maxAbsDiff } from "../src/tensor/tensor.js";

const m = 3;
const w: WeightMatrix = {
  rows: 5,
  cols: 4,
  dtype: "F32",
  data: Float32Array.from({ length: 20 }, (_, i) => Math.sin(i + 1)),
};
const x = Float32Array.from({ length: m * 4 }, (_, i) => Math.cos(i));
const ts = new TsKernels();
const reference = await ts.linear(x, m, w);
after(() => ts.dispose());

describe("LVLM_INTERPRET_EP", () => {
  test("unset or empty is the CPU; names are case-blind; anything else fails in one line listing the choices", () => {
    assert.equal(executionProviderFromEnv({}), "cpu");
    assert.equal(executionProviderFromEnv({ LVLM_INTERPRET_EP: " " }), "cpu");
    assert.equal(executionProviderFromEnv({ LVLM_INTERPRET_EP: " WebGPU " }), "webgpu");
    assert.throws(
      () => executionProviderFromEnv({ LVLM_INTERPRET_EP: "tpu" }),
      (e: Error) =>
        e.message ===
        `LVLM_INTERPRET_EP="tpu" is not an execution provider (expected one of: cpu, cuda, webgpu)`,
    );
  });

  test("the CPU provider by default, and its product is the reference's", async () => {
    const k = await OrtKernels.create();
    try {
      assert.equal(k.executionProvider, "cpu");
      assert.ok(maxAbsDiff(await k.linear(x, m, w), reference) <= 1e-6);
    } finally {
      await k.dispose();
    }
  });

  for (const ep of EXECUTION_PROVIDERS.filter((p) => p !== "cpu")) {
    test(`${ep}: the same product where it starts, else one line naming it at creation`, async () => {
      let k: OrtKernels | null = null;
      try {
        k = await OrtKernels.create({ executionProvider: ep });
      } catch (e) {
        const msg = (e as Error).message;
        assert.ok(msg.startsWith(`onnxruntime's ${ep} execution provider did not start (`), msg);
        assert.ok(msg.includes("LVLM_INTERPRET_EP=cpu runs on the CPU"), msg);
        assert.ok(!msg.includes("\n"), "one line");
        return;
      }
      try {
        assert.equal(k.executionProvider, ep);
        const d = maxAbsDiff(await k.linear(x, m, w), reference);
        assert.ok(d <= 1e-4, `${ep} product off by ${d}`);
      } finally {
        await k.dispose();
      }
    });
  }
});
