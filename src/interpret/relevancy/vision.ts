/**
 * The vision side of relevancy: the tower's CAMs from a gradient at the image features, the CLS-row maps
 * vit / all / all_v2, and the chain map onto the input patches. A tower of several passes (LLaVA-NeXT's base
 * view and tiles) gets each of them per pass, from that pass's own CAMs and CLS row; image tokens reach the
 * passes through their sources (`TowerGeometry.sourcesOf`), weighted where a token blends several.
 */
import type { RelevancyPlan } from "./plan.js";
import { type Cam, camFromGrad, rolloutLeft } from "./rollout.js";
import type { ForwardTape } from "./tape.js";
import type { TokenRelevancy } from "./types.js";

/**
 * The tower's CAMs of `layers` for a gradient at the image features (one tower backward on the tape), per
 * pass: result[k][j] is pass k's CAM of layer layers[j].
 */
export async function towerCams(
  tape: ForwardTape,
  plan: RelevancyPlan,
  dFeatures: Float32Array,
  layers: number[],
): Promise<Cam[][]> {
  const { Sv, Hv, passes } = plan;
  const block = Hv * Sv * Sv;
  const cams: Cam[][] = Array.from({ length: passes }, () => []);
  await tape.model.imageBackward(tape.kernels, tape.image, dFeatures, {
    onLayer: (l, dP, pr) => {
      for (let k = 0; k < passes; k++) {
        const part = (a: Float32Array) => a.subarray(k * block, (k + 1) * block);
        cams[k][l] = { data: camFromGrad(part(dP), part(pr), Hv, Sv, Sv), stride: Sv };
      }
    },
  });
  return cams.map((c) => layers.map((l) => c[l] ?? { data: new Float32Array(Sv * Sv), stride: Sv }));
}

/** Adds weight · value(i) at every source (pass k, token j) of every image token i into into[k][j]. */
function spreadOverSources(plan: RelevancyPlan, value: (i: number) => number, into: Float64Array[]): void {
  plan.sources.forEach((src, i) => {
    for (const s of src) into[s.pass][s.token] += s.weight * value(i);
  });
}

/**
 * The CLS-row maps vit / all / all_v2 (those the plan asks for) from the tower CAMs (per pass), the LLM row
 * and the LLM CAMs, each [passes·Sv] pass-major. Per pass k, w_k = CLS row of R_v,k; every CLS row is w_k · R0
 * for its initial map R0, which links pass k's tower tokens to the image tokens they are sources of.
 */
export function clsRowMaps(
  plan: RelevancyPlan,
  kindCams: Cam[][],
  llm: Float32Array,
  cams: Cam[],
  n: number,
): Pick<TokenRelevancy, "vit" | "all" | "allV2"> {
  const { Sv, imagePositions: imgPos, vitKinds, passes, clsIndex: cls, sources } = plan;
  const out: Pick<TokenRelevancy, "vit" | "all" | "allV2"> = {};
  const e0 = new Float64Array(Sv);
  e0[cls] = 1;
  const w = kindCams.map((c) => rolloutLeft(e0, c, Sv));
  const rows = () => new Float32Array(passes * Sv);
  if (vitKinds.includes("vit")) {
    const vit = rows();
    w.forEach((wk, k) => {
      vit.set(wk, k * Sv);
    });
    out.vit = vit;
  }
  if (vitKinds.includes("all")) {
    // Per pass: lift w_k onto the image positions (u = w_k · M_k, M_k: pass k's tokens → image tokens), roll
    // it through the LLM, and read it back through M_kᵀ; the CLS entry stays w_k[cls].
    const all = rows();
    for (let k = 0; k < passes; k++) {
      const u = new Float64Array(n);
      sources.forEach((src, i) => {
        for (const s of src) if (s.pass === k) u[imgPos[i]] += s.weight * w[k][s.token];
      });
      const ur = rolloutLeft(u, cams, n);
      const back = new Float64Array(Sv);
      sources.forEach((src, i) => {
        for (const s of src) if (s.pass === k) back[s.token] += s.weight * ur[imgPos[i]];
      });
      back[cls] = w[k][cls];
      all.set(back, k * Sv);
    }
    out.all = all;
  }
  if (vitKinds.includes("all_v2")) {
    // w_k · (I + e_cls r̃_kᵀ + r̃_k e_clsᵀ) = w_k + w_k[cls] · r̃_k + (w_k · r̃_k) e_cls, r̃_k = r · M_kᵀ, r = R[p, img].
    const v2 = rows();
    w.forEach((wk, k) => {
      v2.set(wk, k * Sv);
    });
    const wr = new Float64Array(passes);
    sources.forEach((src, i) => {
      for (const s of src) {
        const k = s.pass;
        v2[k * Sv + s.token] += w[k][cls] * s.weight * llm[imgPos[i]];
        wr[k] += w[k][s.token] * s.weight * llm[imgPos[i]];
      }
    });
    for (let k = 0; k < passes; k++) v2[k * Sv + cls] += wr[k];
    out.allV2 = v2;
  }
  return out;
}

/**
 * The chain map: the LLM row's image part pushed back onto each pass's tower tokens through the sources, then
 * through that pass's fresh-gradient rollout, CLS dropped: [passes·(Sv − 1 with CLS)] pass-major.
 */
export function chainMap(plan: RelevancyPlan, llm: Float32Array, freshCams: Cam[][]): Float32Array {
  const { Sv, clsIndex, imagePositions: imgPos, passes } = plan;
  const u = Array.from({ length: passes }, () => new Float64Array(Sv));
  spreadOverSources(plan, (i) => llm[imgPos[i]], u);
  const width = Sv - (clsIndex >= 0 ? 1 : 0);
  const out = new Float32Array(passes * width);
  for (let k = 0; k < passes; k++) {
    if (clsIndex >= 0) u[k][clsIndex] = 0;
    const ur = rolloutLeft(u[k], freshCams[k], Sv);
    out.set(Float32Array.from(ur.filter((_, j) => j !== clsIndex)), k * width);
  }
  return out;
}
