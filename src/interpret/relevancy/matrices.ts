/** Full rollout matrices of a relevancy request (`keepMatrices`: tests and debugging, O(n³)). */
import type { Kernels } from "../../kernels/types.js";
import type { RelevancyPlan } from "./plan.js";
import { allInitialMap, type Cam, rolloutMatrix } from "./rollout.js";
import type { TokenRelevancy } from "./types.js";

/** Full matrices for tests and debugging (`keepMatrices`): the LLM rollout and CAMs, and the tower's maps. */
export async function relevancyMatrices(
  kernels: Kernels,
  plan: RelevancyPlan,
  cams: Cam[],
  n: number,
  kindCams: Cam[] | null,
  freshCams: Cam[] | null,
): Promise<NonNullable<TokenRelevancy["matrices"]>> {
  const m: NonNullable<TokenRelevancy["matrices"]> = await llmMatrices(kernels, cams, n);
  const { Sv, vitKinds } = plan;
  if (kindCams) {
    m.vitCams = kindCams.map((c) => c.data.slice());
    if (vitKinds.includes("vit")) m.vitR = await rolloutMatrix(kernels, kindCams, Sv);
    if (vitKinds.includes("all"))
      m.allR = await rolloutMatrix(kernels, kindCams, Sv, allInitialMap(m.R, n, plan.imagePositions));
  }
  if (freshCams && plan.chain) m.chainVitR = await rolloutMatrix(kernels, freshCams, Sv);
  return m;
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
