/** Full rollout matrices of a relevancy request (`keepMatrices`: tests and debugging, O(n³)). */
import type { Kernels } from "../../kernels/types.js";
import type { RelevancyPlan } from "./plan.js";
import { type Cam, rolloutMatrix } from "./rollout.js";
import type { TokenRelevancy } from "./types.js";

/**
 * Full matrices for tests and debugging (`keepMatrices`): the LLM rollout and CAMs, and the tower's maps, one
 * S×S block per pass (pass-major) computed from that pass's CAMs alone.
 */
export async function relevancyMatrices(
  kernels: Kernels,
  plan: RelevancyPlan,
  cams: Cam[],
  n: number,
  kindCams: Cam[][] | null,
  freshCams: Cam[][] | null,
): Promise<NonNullable<TokenRelevancy["matrices"]>> {
  const m: NonNullable<TokenRelevancy["matrices"]> = await llmMatrices(kernels, cams, n);
  const { Sv, vitKinds, passes } = plan;
  const perPass = async (f: (k: number) => Promise<Float32Array>) => {
    const out = new Float32Array(passes * Sv * Sv);
    for (let k = 0; k < passes; k++) out.set(await f(k), k * Sv * Sv);
    return out;
  };
  if (kindCams) {
    m.vitCams = kindCams[0].map((_, j) => concatPasses(kindCams.map((c) => c[j].data)));
    if (vitKinds.includes("vit")) m.vitR = await perPass((k) => rolloutMatrix(kernels, kindCams[k], Sv));
    if (vitKinds.includes("all"))
      m.allR = await perPass((k) =>
        rolloutMatrix(kernels, kindCams[k], Sv, towerAllInitialMap(plan, m.R, n, k)),
      );
  }
  if (freshCams && plan.chain) m.chainVitR = await perPass((k) => rolloutMatrix(kernels, freshCams[k], Sv));
  return m;
}

function concatPasses(parts: Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((a, p) => a + p.length, 0));
  parts.reduce((o, p) => {
    out.set(p, o);
    return o + p.length;
  }, 0);
  return out;
}

/**
 * Initial map of `all` for pass k (Sv × Sv): 1 at (cls, cls), and M_k · R[img, img] · M_kᵀ elsewhere, M_k[j, i]
 * the weight of pass k's token j among image token i's sources (LLaVA: [[1, 0], [0, R[img, img]]]).
 */
export function towerAllInitialMap(plan: RelevancyPlan, R: Float32Array, n: number, k: number): Float32Array {
  const { Sv, clsIndex, imagePositions: img, sources } = plan;
  const r0 = new Float32Array(Sv * Sv);
  r0[clsIndex * Sv + clsIndex] = 1;
  const mine = sources.map((src) => src.filter((s) => s.pass === k));
  for (let i = 0; i < img.length; i++) {
    for (const a of mine[i]) {
      for (let j = 0; j < img.length; j++) {
        for (const b of mine[j]) r0[a.token * Sv + b.token] += a.weight * b.weight * R[img[i] * n + img[j]];
      }
    }
  }
  return r0;
}

async function llmMatrices(
  kernels: Kernels,
  cams: Cam[],
  n: number,
): Promise<{ R: Float32Array; cams: Float32Array[] }> {
  const sq = cams.map((c) => {
    const out = new Float32Array(n * n);
    for (let i = 0; i < n; i++) out.set(c.data.subarray(i * c.stride, i * c.stride + n), i * n);
    return out;
  });
  const R = await rolloutMatrix(
    kernels,
    sq.map((data) => ({ data, stride: n })),
    n,
  );
  return { R, cams: sq };
}
