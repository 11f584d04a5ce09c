/**
 * AdamW (decoupled weight decay, bias-corrected moments) over flat float32 parameters, with optional global
 * gradient-norm clipping. State is plain arrays so it can be checkpointed and resumed exactly.
 */
export interface Param {
  name: string;
  data: Float32Array;
  grad: Float32Array;
  /** Norm gains, biases and embeddings of positions are usually not decayed. */
  decay: boolean;
  /** Left as it is by `update` (no step, no decay, moments kept). */
  frozen?: boolean;
}

export interface AdamWOptions {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
}

export class AdamW {
  readonly m: Float32Array[];
  readonly v: Float32Array[];
  step = 0;

  constructor(
    readonly params: Param[],
    public opts: AdamWOptions,
  ) {
    this.m = params.map((p) => new Float32Array(p.data.length));
    this.v = params.map((p) => new Float32Array(p.data.length));
  }

  /** Global L2 norm of all gradients. */
  gradNorm(): number {
    let s = 0;
    for (const p of this.params) for (let i = 0; i < p.grad.length; i++) s += p.grad[i] * p.grad[i];
    return Math.sqrt(s);
  }

  zeroGrad(): void {
    for (const p of this.params) p.grad.fill(0);
  }

  /** One update with learning rate `lr` (schedules live outside); gradients are scaled by `gradScale` first. */
  update(lr: number, gradScale = 1): void {
    this.step++;
    const { beta1: b1, beta2: b2, eps, weightDecay } = this.opts;
    const c1 = 1 - b1 ** this.step;
    const c2 = 1 - b2 ** this.step;
    this.params.forEach((p, j) => {
      if (p.frozen) return;
      const m = this.m[j];
      const v = this.v[j];
      const decay = p.decay ? lr * weightDecay : 0;
      for (let i = 0; i < p.data.length; i++) {
        const g = p.grad[i] * gradScale;
        m[i] = b1 * m[i] + (1 - b1) * g;
        v[i] = b2 * v[i] + (1 - b2) * g * g;
        p.data[i] -= decay * p.data[i] + (lr * (m[i] / c1)) / (Math.sqrt(v[i] / c2) + eps);
      }
    });
  }
}

/** Linear warm-up then cosine decay to `minRatio`·lr. */
export function cosineSchedule(
  step: number,
  total: number,
  warmup: number,
  lr: number,
  minRatio = 0.1,
): number {
  if (step < warmup) return (lr * (step + 1)) / warmup;
  const t = Math.min(1, (step - warmup) / Math.max(1, total - warmup));
  return lr * (minRatio + (1 - minRatio) * 0.5 * (1 + Math.cos(Math.PI * t)));
}
