/**
 * The causality view of one explained token as small JSON for the web app: per head the PAG restricted to the
 * explanation (nodes labelled as image patches or words, edges with their end marks), the explanation's
 * image patches and weights, its growth with the search radius, and the head importances. Input: a
 * `causal/<k>.json` document (format: docs/trace-format.md, section "causal/<k>.json") and the run's manifest.
 */
import type {
  CausalGraphEdge,
  CausalGraphNode,
  CausalGrowthStep,
  CausalHeadView,
  CausalView,
  PagMark,
} from "../../contracts/http.js";
import type { RunManifest } from "../../run/manifest.js";
import type { ImageTokens } from "../../run/run-dir.js";
import type { CausalDocument } from "../causal/explain-run.js";
import { imageTokenLabels } from "./image-tokens.js";
import { tokenDisplayText } from "./words.js";

// The view's shapes are the HTTP contracts (contracts/http.ts).
export type { CausalGraphEdge, CausalGraphNode, CausalGrowthStep, CausalHeadView, CausalView };

/** Labels of sequence positions: image tokens by their place ("patch r,c"), prompt and answer tokens by text. */
export function positionLabeller(
  m: RunManifest,
  image: ImageTokens,
  promptTokens: string[],
): (pos: number) => string {
  const T = m.input_ids.length;
  const labels = imageTokenLabels(image.layout);
  const imageIndex = new Map(image.positions.map((p, i) => [p, i]));
  return (pos) => {
    const i = imageIndex.get(pos);
    if (i !== undefined) return labels[i];
    if (pos < T) return tokenDisplayText(promptTokens[pos] ?? `#${pos}`) || "␣";
    return tokenDisplayText(m.generated_tokens[pos - T] ?? `#${pos}`) || "␣";
  };
}

export function causalView(
  doc: CausalDocument,
  m: RunManifest,
  image: ImageTokens,
  promptTokens: string[],
): CausalView {
  const x = doc.token_to_explain;
  const imageIndex = new Map(image.positions.map((p, i) => [p, i]));
  const isImage = (p: number) => imageIndex.has(p);
  const positionLabel = positionLabeller(m, image, promptTokens);
  const heads: CausalHeadView[] = doc.heads.map((h) => {
    const level = new Map<number, number>();
    const maxR = Math.max(0, ...Object.keys(h.explanation_per_radius).map(Number));
    for (let r = 0; r <= maxR; r++) {
      const v = h.explanation_per_radius[String(r)];
      if (v === undefined) continue;
      for (const p of Array.isArray(v) ? v : [v]) if (!level.has(p)) level.set(p, r);
    }
    const expl = new Set([...h.explanation, x]);
    const ids = [...new Set([...h.nodes, x])];
    const nodes: CausalGraphNode[] = ids.map((p) => ({
      id: p,
      kind: p === x ? "target" : isImage(p) ? "image" : "text",
      label: p === x ? `${positionLabel(p)} → ${tokenDisplayText(doc.token ?? "")}` : positionLabel(p),
      patch: imageIndex.get(p) ?? null,
      radius: level.get(p) ?? (p === x ? 0 : null),
      inExplanation: expl.has(p),
    }));
    const edges: CausalGraphEdge[] = h.edges.map((e) => ({
      source: e.i,
      target: e.j,
      sourceMark: e.mark_at_i as PagMark,
      targetMark: e.mark_at_j as PagMark,
      text: e.edge,
    }));
    const growth: CausalGrowthStep[] = [];
    const seen = new Set<number>();
    for (let r = 0; r <= Math.max(maxR, doc.params.max_range); r++) {
      for (const [p, l] of level) if (l === r) seen.add(p);
      const images = [...seen].filter(isImage).length;
      growth.push({ radius: r, total: seen.size, image: images, text: seen.size - images });
    }
    return {
      head: h.head,
      importance: h.head_importance,
      nodes,
      edges,
      explanationPatches: h.explanation_image_patches,
      patchWeights: h.image_expla_weights,
      growth,
    };
  });
  return {
    token: doc.token_index,
    tokenText: tokenDisplayText(doc.token ?? ""),
    layer: doc.layer,
    target: x,
    params: doc.params,
    heads,
    patchWeights: doc.patch_weights.normalized.flat(),
  };
}
