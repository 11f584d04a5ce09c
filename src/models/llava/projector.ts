/** LLaVA's multi-modal projector: linear_1 → activation → linear_2, token by token, with its backward. */
import type { Kernels, WeightMatrix } from "../../kernels/types.js";
import { activationBackward, activationFn, activationGradFn, applyActivation } from "../../tensor/ops.js";
import type { WeightGradients } from "../gradients.js";
import { linearBackwardInput, linearBackwardWeight } from "../linear-grad.js";
import type { ModelWeights } from "../weights.js";
import type { LlavaConfig } from "./config.js";

export class Projector {
  readonly w1: WeightMatrix;
  readonly b1: Float32Array | null;
  readonly w2: WeightMatrix;
  readonly b2: Float32Array | null;
  readonly act: (x: number) => number;
  readonly actGrad: (x: number) => number;

  constructor(cfg: LlavaConfig, w: ModelWeights) {
    const Dv = cfg.vision.hiddenSize * cfg.visionFeatureLayers.length;
    const D = cfg.text.hiddenSize;
    this.w1 = w.matrix("projector.linear_1.weight", [D, Dv]);
    this.b1 = cfg.projectorBias ? w.vector("projector.linear_1.bias", [D]) : null;
    this.w2 = w.matrix("projector.linear_2.weight", [D, D]);
    this.b2 = cfg.projectorBias ? w.vector("projector.linear_2.bias", [D]) : null;
    this.act = activationFn(cfg.projectorHiddenAct);
    this.actGrad = activationGradFn(cfg.projectorHiddenAct);
  }

  async forward(kernels: Kernels, x: Float32Array, n: number): Promise<Float32Array> {
    const a = applyActivation(await kernels.linear(x, n, this.w1, this.b1), this.act);
    return kernels.linear(a, n, this.w2, this.b2);
  }

  /** Backward w.r.t. the input x [n, Dv] given dY [n, D] (linear_1's output is recomputed from x). */
  async backward(
    kernels: Kernels,
    x: Float32Array,
    n: number,
    dY: Float32Array,
    grads?: WeightGradients,
  ): Promise<Float32Array> {
    const u = await kernels.linear(x, n, this.w1, this.b1);
    const da = await linearBackwardInput(kernels, dY, n, this.w2);
    const du = activationBackward(u, da, this.actGrad);
    if (grads) {
      await linearBackwardWeight(kernels, dY, applyActivation(u, this.act), n, this.w2, this.b2, grads);
      await linearBackwardWeight(kernels, du, x, n, this.w1, this.b1, grads);
    }
    return linearBackwardInput(kernels, du, n, this.w1);
  }
}
