/**
 * Faithfulness: choose an answer token and a map (attention head or mean, rollout, relevancy, causal); the
 * check deletes the map's top patches (deletion) or keeps only them (insertion) in steps and plots the token's
 * probability against random maps', with the AUCs (src/interpret/faithfulness; values as the library wrote).
 */
import { useState } from "preact/hooks";
import type { RunDetail } from "../api";
import { forget, prefetch, type Query } from "../cache";
import { type FaithfulnessResult, faithfulnessApi } from "../faithfulness-api";
import { ChartBox } from "./charts";
import { ErrorBox, IndexSelect, JobProgress, Panel, TokenChips, useAsync, useJob } from "./common";

type MapKind = "attn" | "rollout" | "rel" | "causal";

const MAP_COLOR = "#d6336c";
const RANDOM_COLOR = "#868e96";

function CurveChart({ r, which }: { r: FaithfulnessResult; which: "deletion" | "insertion" }) {
  const auc = r.curves[`${which}_auc`];
  const rand = r.random[`${which}_auc`];
  const better = which === "deletion" ? auc < rand : auc > rand;
  return (
    <div class="faith-curve" data-testid={`faith-${which}`} data-auc={auc} data-random-auc={rand}>
      <h4>
        {which === "deletion" ? "Deletion (top patches removed)" : "Insertion (only top patches kept)"} · AUC{" "}
        <strong>{auc.toFixed(3)}</strong> vs random {rand.toFixed(3)}{" "}
        <span class={better ? "good" : "muted"}>
          {better ? "better than random" : "not better than random"}
        </span>
      </h4>
      <ChartBox
        type="line"
        labels={r.fractions.map((f) => `${Math.round(100 * f)}%`)}
        series={[
          { label: `map ${r.map}`, values: r.curves[which], color: MAP_COLOR },
          { label: `random (mean of ${r.random.seeds})`, values: r.random[which], color: RANDOM_COLOR },
        ]}
        width={420}
        height={240}
        xTitle={which === "deletion" ? "patches deleted" : "patches kept"}
        yTitle={`p(${r.token_text})`}
        testId={`faith-chart-${which}`}
      />
    </div>
  );
}

/** The stored check of one token's map (null where none was made). */
function checkQuery(run: RunDetail, token: number, spec: string): Query<FaithfulnessResult | null> {
  return { key: `faith:${run.id}:${token}:${spec}`, load: () => faithfulnessApi.get(run.id, token, spec) };
}

/** What the view checks when its tab is opened (its first choices below): the first token's mean attention in
 * the last layer. */
const openedSpec = (run: RunDetail) => `attn:${run.layout.layers - 1}:mean`;

/** Asks for what the view shows when its tab is opened, before it is. */
export function prefetchFaithfulness(run: RunDetail): void {
  prefetch(checkQuery(run, 0, openedSpec(run)));
}

export function FaithfulnessView({ run }: { run: RunDetail }) {
  const [token, setToken] = useState(0);
  const [kind, setKind] = useState<MapKind>("attn");
  const [layer, setLayer] = useState(run.layout.layers - 1);
  const [head, setHead] = useState<string>("mean");
  const [relMode, setRelMode] = useState("exact");
  const [relKind, setRelKind] = useState("llm");
  const [steps, setSteps] = useState(10);
  const [seeds, setSeeds] = useState(3);
  const spec =
    kind === "attn" ? `attn:${layer}:${head}` : kind === "rel" ? `rel:${relMode}:${relKind}` : kind;
  const storedQ = checkQuery(run, token, spec);
  const stored = useAsync(storedQ.load, [run.id, token, spec], storedQ.key);
  const { job, start, cancel, busy } = useJob({
    done: () => {
      forget(`faith:${run.id}:`);
      stored.reload();
    },
  });
  const r = stored.data;
  return (
    <div class="view faithfulness" data-testid="faithfulness-view">
      <Panel title="Faithfulness check" testId="faith-panel">
        <p class="muted small">
          Does the map point at what the answer depends on? The image patches are ranked by the map; deleting
          the top ones (painted with the processor's mean colour) should make the token's probability fall
          faster than deleting random ones (lower deletion AUC), and keeping only them should keep it higher
          (higher insertion AUC). The model is re-run for every step.
        </p>
        <TokenChips
          tokens={run.tokens}
          selected={new Set([token])}
          onToggle={(i) => setToken(i)}
          testId="faith-tokens"
        />
        <div class="actions" data-export="skip">
          <label>
            map{" "}
            <select
              value={kind}
              onChange={(e) => setKind((e.target as HTMLSelectElement).value as MapKind)}
              data-testid="faith-kind"
            >
              <option value="attn">attention</option>
              <option value="rollout">attention rollout</option>
              <option value="rel">relevancy</option>
              <option value="causal">causal patches</option>
            </select>
          </label>
          {kind === "attn" && (
            <>
              <IndexSelect
                label="layer"
                count={run.layout.layers}
                value={layer}
                onChange={(v) => setLayer(Number(v))}
                testId="faith-layer"
              />
              <IndexSelect
                label="head"
                count={run.layout.heads}
                value={head}
                onChange={setHead}
                testId="faith-head"
                first={{ value: "mean", label: "mean" }}
              />
            </>
          )}
          {kind === "rel" && (
            <>
              <label>
                mode{" "}
                <select
                  value={relMode}
                  onChange={(e) => setRelMode((e.target as HTMLSelectElement).value)}
                  data-testid="faith-rel-mode"
                >
                  <option value="exact">exact</option>
                  <option value="incremental">incremental</option>
                </select>
              </label>
              <label>
                kind{" "}
                <select
                  value={relKind}
                  onChange={(e) => setRelKind((e.target as HTMLSelectElement).value)}
                  data-testid="faith-rel-kind"
                >
                  {["llm", "vit", "all", "all_v2", "chain"].map((k) => (
                    <option key={k} value={k}>
                      {k}
                    </option>
                  ))}
                </select>
              </label>
            </>
          )}
          <label>
            steps{" "}
            <input
              type="number"
              min={1}
              max={100}
              value={steps}
              onInput={(e) => setSteps(Number((e.target as HTMLInputElement).value))}
              data-testid="faith-steps"
            />
          </label>
          <label>
            random seeds{" "}
            <input
              type="number"
              min={1}
              max={20}
              value={seeds}
              onInput={(e) => setSeeds(Number((e.target as HTMLInputElement).value))}
              data-testid="faith-seeds"
            />
          </label>
          <button
            type="button"
            disabled={busy}
            onClick={() => start(() => faithfulnessApi.compute(run.id, token, spec, steps, seeds))}
            data-testid="faith-run"
          >
            {r ? "Run again" : "Run check"}
          </button>
          <code data-testid="faith-spec">{spec}</code>
        </div>
        <JobProgress job={job} onCancel={cancel} label="Faithfulness check" />
        <ErrorBox error={stored.error} />
        {!r && !stored.loading && !stored.error && (
          <p class="muted" data-testid="faith-empty">
            Not checked yet for this token and map: run the check (the command line does the same:{" "}
            <code>
              lvlm-interpret check --run DIR --token {token} --map {spec}
            </code>
            ).
          </p>
        )}
        {r && (
          <div data-testid="faith-result" data-map={r.map} data-token={r.token}>
            <p class="small">
              Answer token <strong>{r.token_text}</strong>: p = {r.run_probability.toFixed(3)} as generated ·{" "}
              {r.located_tokens} image patches in {r.steps} steps · {r.forwards} forward passes in{" "}
              {r.seconds.toFixed(1)} s
            </p>
            <div class="faith-charts">
              <CurveChart r={r} which="deletion" />
              <CurveChart r={r} which="insertion" />
            </div>
          </div>
        )}
      </Panel>
    </div>
  );
}
