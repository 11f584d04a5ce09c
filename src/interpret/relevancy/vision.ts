/**
 * The vision side of relevancy: the tower's CAMs from a gradient at the image features, the CLS-row maps
 * vit / all / all_v2, and the chain map onto the input patches.
 */
import type { RelevancyPlan } from "./plan.js";
import { type Cam, camFromGrad, rolloutLeft } from "./rollout.js";
import type { ForwardTape } from "./tape.js";
import type { TokenRelevancy } from "./types.js";

/** The tower's CAMs of `layers` for a gradient at the image features (one tower backward on the tape). */
export async function towerCams(
  tape: ForwardTape,
  plan: RelevancyPlan,
  dFeatures: Float32Array,
  layers: number[],
): Promise<Cam[]> {
  const Sv = plan.Sv;
  const Hv = tape.model.tower?.heads ?? 0;
  const cams: Cam[] = [];
  await tape.model.imageBackward(tape.kernels, tape.image, dFeatures, {
    onLayer: (l, dP, pr) => {
      cams[l] = { data: camFromGrad(dP, pr, Hv, Sv, Sv), stride: Sv };
    },
  });
  return layers.map((l) => cams[l] ?? { data: new Float32Array(Sv * Sv), stride: Sv });
}

/**
 * The CLS-row maps vit / all / all_v2 (those the plan asks for) from the tower CAMs, the LLM row and the LLM
 * CAMs. w = CLS row of R_v; every CLS row is w · R0 for its initial map R0.
 */
export function clsRowMaps(
  plan: RelevancyPlan,
  kindCams: Cam[],
  llm: Float32Array,
  cams: Cam[],
  n: number,
): Pick<TokenRelevancy, "vit" | "all" | "allV2"> {
  const { Sv, imagePositions: imgPos, vitKinds } = plan;
  const P = imgPos.length;
  const out: Pick<TokenRelevancy, "vit" | "all" | "allV2"> = {};
  const e0 = new Float64Array(Sv);
  e0[0] = 1;
  const w = rolloutLeft(e0, kindCams, Sv);
  if (vitKinds.includes("vit")) out.vit = Float32Array.from(w);
  if (vitKinds.includes("all")) {
    // [w_0, (w_img · R[img, img])]: lift w_img onto the image positions and roll it through the LLM.
    const u = new Float64Array(n);
    for (let i = 0; i < P; i++) u[imgPos[i]] = w[i + 1];
    const ur = rolloutLeft(u, cams, n);
    const all = new Float32Array(Sv);
    all[0] = w[0];
    for (let j = 0; j < P; j++) all[j + 1] = ur[imgPos[j]];
    out.all = all;
  }
  if (vitKinds.includes("all_v2")) {
    // w · (I + e_0 r̃ᵀ + r̃ e_0ᵀ) = w + w_0 · r̃ + (w · r̃) e_0, r̃ = [0, r], r = R[p, img].
    const v2 = Float32Array.from(w);
    let wr = 0;
    for (let i = 0; i < P; i++) {
      v2[i + 1] += w[0] * llm[imgPos[i]];
      wr += w[i + 1] * llm[imgPos[i]];
    }
    v2[0] += wr;
    out.allV2 = v2;
  }
  return out;
}

/** The chain map: the LLM row's image part pushed back through the tower's fresh-gradient rollout, CLS dropped. */
export function chainMap(plan: RelevancyPlan, llm: Float32Array, freshCams: Cam[]): Float32Array {
  const { Sv, clsIndex, vitOf, imagePositions: imgPos } = plan;
  const u = new Float64Array(Sv);
  for (let i = 0; i < imgPos.length; i++) u[vitOf[i]] = llm[imgPos[i]];
  if (clsIndex >= 0) u[clsIndex] = 0;
  const ur = rolloutLeft(u, freshCams, Sv);
  return Float32Array.from(ur.filter((_, j) => j !== clsIndex));
}
