/**
 * The maps a faithfulness check can test, named by a spec string, each read from a run as one value per
 * image token for answer token k (the same numbers the app draws):
 *
 *   attn:L:H      raw attention of LLM layer L, head H, from the row that predicted token k (llm_attn.L)
 *   attn:L:mean   the same, averaged over the layer's heads
 *   rollout       attention rollout over every LLM layer (src/interpret/attention-rollout.ts)
 *   rel:MODE:KIND relevancy stored by `lvlm-interpret relevancy` (rel.MODE.safetensors): MODE exact or
 *                 incremental, KIND llm, vit, all, all_v2 or chain; raw rows, as bench:grounding ranks them
 *                 (the app's normalised display divides by the row's off-diagonal sum: the same ranking
 *                 whenever that sum is positive)
 *   causal        CLEANN's patch weights summed over heads (causal/<k>.json, from `lvlm-interpret causal`)
 */
import { type Run, RunFileError, readRunFile } from "../../run/run-dir.js";
import { attentionRolloutRow } from "../attention-rollout.js";
import { CAUSAL_FORMAT, type CausalDocument } from "../causal/explain-run.js";
import { RELEVANCY_MODES, type RelevancyMode } from "../relevancy/index.js";
import { answerRow, attentionLayout, readLlmAttentionRows } from "../views/attention.js";
import {
  RELEVANCY_MAP_KINDS,
  type RelevancyMapKind,
  RelevancyViewError,
  relevancyImageMaps,
} from "../views/relevancy-panels.js";

/** A bad spec, or a map the run does not hold yet; the message is one line and says what to do. */
export class MapSpecError extends Error {
  override name = "MapSpecError";
}

export type MapSpec =
  | { kind: "attn"; layer: number; head: number | "mean" }
  | { kind: "rollout" }
  | { kind: "rel"; mode: RelevancyMode; map: RelevancyMapKind }
  | { kind: "causal" };

export const MAP_SPEC_HELP =
  "attn:L:H | attn:L:mean | rollout | rel:MODE:KIND (MODE exact|incremental, KIND llm|vit|all|all_v2|chain) | causal";

const nat = (s: string) => (/^\d+$/.test(s) ? Number(s) : Number.NaN);

/** Parses a spec string (syntax: {@link MAP_SPEC_HELP}). */
export function parseMapSpec(spec: string): MapSpec {
  const parts = spec.split(":");
  const bad = (why: string) => new MapSpecError(`map "${spec}": ${why} (expected ${MAP_SPEC_HELP})`);
  switch (parts[0]) {
    case "attn": {
      if (parts.length !== 3) throw bad("attn takes a layer and a head or mean");
      const layer = nat(parts[1]);
      const head = parts[2] === "mean" ? "mean" : nat(parts[2]);
      if (Number.isNaN(layer)) throw bad(`layer "${parts[1]}" is not a non-negative integer`);
      if (Number.isNaN(head)) throw bad(`head "${parts[2]}" is neither a non-negative integer nor mean`);
      return { kind: "attn", layer, head };
    }
    case "rollout":
    case "causal":
      if (parts.length !== 1) throw bad(`${parts[0]} takes no arguments`);
      return { kind: parts[0] };
    case "rel": {
      if (parts.length !== 3) throw bad("rel takes a mode and a kind");
      const mode = parts[1] as RelevancyMode;
      const map = parts[2] as RelevancyMapKind;
      if (!RELEVANCY_MODES.includes(mode)) throw bad(`unknown relevancy mode "${parts[1]}"`);
      if (!RELEVANCY_MAP_KINDS.includes(map)) throw bad(`unknown relevancy kind "${parts[2]}"`);
      return { kind: "rel", mode, map };
    }
    default:
      throw bad(`unknown map kind "${parts[0]}"`);
  }
}

/** The spec written back in its canonical form. */
export function formatMapSpec(s: MapSpec): string {
  if (s.kind === "attn") return `attn:${s.layer}:${s.head}`;
  if (s.kind === "rel") return `rel:${s.mode}:${s.map}`;
  return s.kind;
}

/** A file-name-safe form of the spec (":" → "-"). */
export function mapSpecSlug(s: MapSpec): string {
  return formatMapSpec(s).replaceAll(":", "-");
}

/** The map over the run's image tokens (NaN where it has no value) for answer token k. */
export function readTokenMap(run: Run, spec: MapSpec, k: number): Float32Array {
  const L = attentionLayout(run);
  const P = L.imagePositions.length;
  const row = answerRow(L, k);
  switch (spec.kind) {
    case "attn": {
      if (spec.layer >= L.layers)
        throw new MapSpecError(
          `map ${formatMapSpec(spec)}: layer out of range (the model has LLM layers 0…${L.layers - 1})`,
        );
      if (spec.head !== "mean" && spec.head >= L.heads)
        throw new MapSpecError(
          `map ${formatMapSpec(spec)}: head out of range (the layer has heads 0…${L.heads - 1})`,
        );
      const rows = readLlmAttentionRows(run, spec.layer, row, 1);
      const heads = spec.head === "mean" ? Array.from({ length: L.heads }, (_, h) => h) : [spec.head];
      const out = new Float32Array(P);
      for (const h of heads)
        for (let i = 0; i < P; i++) out[i] += rows[h * L.S + L.imagePositions[i]] / heads.length;
      return out;
    }
    case "rollout": {
      const attn = Array.from({ length: L.layers }, (_, l) => run.llmAttention(l).data);
      const r = attentionRolloutRow(attn, L.heads, L.S, row);
      return Float32Array.from(L.imagePositions, (q) => r[q]);
    }
    case "rel": {
      let view: ReturnType<typeof relevancyImageMaps>;
      try {
        view = relevancyImageMaps(run, spec.mode, spec.map, "token", false);
      } catch (e) {
        if (e instanceof RelevancyViewError)
          throw new MapSpecError(`map ${formatMapSpec(spec)}: ${e.message}${relHint(spec, k)}`);
        throw e;
      }
      const item = view.items.find((it) => it.tokens.length === 1 && it.tokens[0] === k);
      if (!item)
        throw new MapSpecError(
          `map ${formatMapSpec(spec)}: no relevancy computed for answer token ${k}${relHint(spec, k)}`,
        );
      return Float32Array.from(item.map, (v) => (v === null ? Number.NaN : v));
    }
    case "causal": {
      const file = `causal/${k}.json`;
      let doc: CausalDocument;
      try {
        doc = JSON.parse(readRunFile(run.dir, file).toString("utf8")) as CausalDocument;
      } catch (e) {
        if (e instanceof RunFileError && e.reason === "missing")
          throw new MapSpecError(
            `map causal: no causal explanation of answer token ${k} (${file}); run \`lvlm-interpret causal --run DIR --token ${k}\` first`,
          );
        throw new MapSpecError(`map causal: ${file} is not readable (${(e as Error).message})`);
      }
      const flat = doc?.patch_weights?.sum?.flat();
      if (doc?.format !== CAUSAL_FORMAT || doc.token_index !== k || flat?.length !== P)
        throw new MapSpecError(
          `map causal: ${file} is not a ${CAUSAL_FORMAT} explanation of token ${k} over ${P} image tokens; recompute it`,
        );
      return Float32Array.from(flat);
    }
  }
}

function relHint(spec: { mode: RelevancyMode; map: RelevancyMapKind }, k: number): string {
  const vision = spec.map === "llm" ? "" : ` --vision ${spec.map}`;
  return `; run \`lvlm-interpret relevancy --run DIR --mode ${spec.mode}${vision} --tokens ${k}\` first`;
}
