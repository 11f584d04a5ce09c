/**
 * Relevancy: per answer word (or token) the relevancy map over the image — LLM, or propagated through the
 * vision tower (vit / all / all_v2 / chain) — in exact or incremental mode; the text relevancy bars (top
 * question words vs the maximum image relevancy); answer tokens coloured by how much they rely on the image
 * vs the text. Computed on demand per token (a queued job with progress), cached in the run.
 */
import { useMemo, useRef, useState } from "preact/hooks";
import {
  api,
  type MapGrouping,
  type RelevancyKind,
  type RelevancyMapsView,
  type RelevancyMode,
  type RelevancyReliance,
  type RelevancyTextView,
  type RunDetail,
} from "../api";
import { forget, prefetch, type Query } from "../cache";
import { cssColor, textOn } from "../colormap";
import { formatValue } from "../heatmap";
import { ChartBox } from "./charts";
import {
  activate,
  Colorbar,
  ErrorBox,
  ExportPng,
  extent,
  ImageMap,
  JobProgress,
  MapScale,
  Panel,
  runCaption,
  SharedScaleToggle,
  TokenChips,
  useAsync,
  useJob,
  useRunImage,
  useSelection,
  useSettings,
} from "./common";

/** Maps drawn at first, and added by each "Show more". */
const MAP_PAGE = 24;

const KINDS: { value: RelevancyKind; label: string }[] = [
  { value: "llm", label: "LLM (answer → image tokens)" },
  { value: "vit", label: "vision tower: vit" },
  { value: "all", label: "vision tower: all" },
  { value: "all_v2", label: "vision tower: all_v2" },
  { value: "chain", label: "vision tower: chain" },
];

/** "Exact LLM relevancy", "Incremental vision-tower (all_v2) relevancy": what a job or a map set is. */
export function relevancyName(mode: RelevancyMode, kind: RelevancyKind): string {
  const m = mode === "exact" ? "Exact" : "Incremental";
  return `${m} ${kind === "llm" ? "LLM" : `vision-tower (${kind})`} relevancy`;
}

/** What the view shows when its tab is opened. */
const OPENED = { mode: "exact", kind: "llm", by: "word" } as const;

/** The maps of one mode, kind and grouping (null while no token has them). */
function mapsQuery(
  run: RunDetail,
  mode: RelevancyMode,
  kind: RelevancyKind,
  by: MapGrouping,
): Query<RelevancyMapsView | null> {
  const computed = run.analyses.relevancy[mode]?.[kind] ?? [];
  return {
    key: `rel:${run.id}:maps:${mode}:${kind}:${by}:${computed.length}`,
    load: () => (computed.length ? api.relevancyMaps(run.id, mode, kind, by) : Promise.resolve(null)),
  };
}

/** Every answer token's reliance on the image (null while no token has LLM relevancy). */
function relianceQuery(run: RunDetail, mode: RelevancyMode): Query<RelevancyReliance | null> {
  const computed = run.analyses.relevancy[mode]?.llm ?? [];
  return {
    key: `rel:${run.id}:reliance:${mode}:${computed.length}`,
    load: () => (computed.length ? api.relevancyReliance(run.id, mode) : Promise.resolve(null)),
  };
}

/** The token whose text relevancy is shown: the one chosen if it has LLM relevancy, else the first that has. */
function textTokenShown(run: RunDetail, mode: RelevancyMode, chosen: number | null): number | null {
  const computed = run.analyses.relevancy[mode]?.llm ?? [];
  return chosen !== null && computed.includes(chosen) ? chosen : (computed[0] ?? null);
}

function textQuery(
  run: RunDetail,
  mode: RelevancyMode,
  token: number | null,
): Query<RelevancyTextView | null> {
  return {
    key: `rel:${run.id}:text:${mode}:${token}`,
    load: () => (token !== null ? api.relevancyText(run.id, mode, token) : Promise.resolve(null)),
  };
}

/** Asks for what the view shows when opened, before it is. */
export function prefetchRelevancy(run: RunDetail): void {
  prefetch(mapsQuery(run, OPENED.mode, OPENED.kind, OPENED.by));
  prefetch(relianceQuery(run, OPENED.mode));
  prefetch(textQuery(run, OPENED.mode, textTokenShown(run, OPENED.mode, null)));
}

export function RelevancyView({ run, onChanged }: { run: RunDetail; onChanged: () => void }) {
  const image = useRunImage(run.id);
  const root = useRef<HTMLDivElement>(null);
  const { settings } = useSettings();
  const [mode, setMode] = useState<RelevancyMode>(OPENED.mode);
  const [kind, setKind] = useState<RelevancyKind>(OPENED.kind);
  const [by, setBy] = useState<MapGrouping>(OPENED.by);
  const [showSeparators, setShowSeparators] = useState(false);
  const [textToken, setTextToken] = useState<number | null>(null);
  const [version, setVersion] = useState(0);
  // A long answer has hundreds of maps: drawn a page at a time, so opening the view stays quick.
  const [shownMaps, setShownMaps] = useState(MAP_PAGE);
  const sel = useSelection([]);
  const computed = run.analyses.relevancy[mode]?.[kind] ?? [];
  const { job, start, cancel, busy } = useJob({
    done: () => {
      forget(`rel:${run.id}:`);
      setVersion((v) => v + 1);
      onChanged();
    },
  });
  const mapsQ = mapsQuery(run, mode, kind, by);
  const maps = useAsync(mapsQ.load, [run.id, mode, kind, by, version, computed.join(",")], mapsQ.key);
  const llmComputed = run.analyses.relevancy[mode]?.llm ?? [];
  const relianceQ = relianceQuery(run, mode);
  const reliance = useAsync(relianceQ.load, [run.id, mode, version, llmComputed.join(",")], relianceQ.key);
  const chosenText = textTokenShown(run, mode, textToken);
  const textQ = textQuery(run, mode, chosenText);
  const text = useAsync(textQ.load, [run.id, mode, chosenText, version], textQ.key);
  const items = useMemo(
    () => (maps.data?.items ?? []).filter((i) => showSeparators || !i.separator),
    [maps.data, showSeparators],
  );
  const [lo, hi] = extent(items.map((i) => i.map));
  const relianceValues = useMemo(() => {
    const v: (number | null)[] = run.tokens.map(() => null);
    for (const r of reliance.data?.tokens ?? []) v[r.token] = r.reliance;
    return v;
  }, [reliance.data, run.tokens]);
  const computedSet = useMemo(() => new Set(computed), [computed]);
  const chosenSet = useMemo(() => (chosenText !== null ? new Set([chosenText]) : undefined), [chosenText]);
  const relianceTitles = useMemo(
    () =>
      relianceValues.map((v, i) =>
        v === null ? `token ${i}: not computed` : `token ${i}: image reliance ${v.toFixed(2)}`,
      ),
    [relianceValues],
  );
  // The job's status belongs to the maps it computes: shown while it runs, and afterwards only next to them.
  const [jobFor, setJobFor] = useState<{ mode: RelevancyMode; kind: RelevancyKind } | null>(null);
  const showJob = busy || (jobFor?.mode === mode && jobFor.kind === kind);
  const compute = (tokens: number[] | "all") => {
    setJobFor({ mode, kind });
    return start(() => api.computeRelevancy(run.id, mode, kind, tokens));
  };

  return (
    <div ref={root} class="view" data-testid="relevancy-view">
      <Panel
        title="Relevancy maps"
        tools={
          <ExportPng
            target={root}
            name={`relevancy-${run.id}-${mode}-${kind}.png`}
            caption={runCaption(run)}
          />
        }
      >
        <div class="controls" data-export="skip">
          <label>
            mode{" "}
            <select
              value={mode}
              onChange={(e) => setMode((e.target as HTMLSelectElement).value as RelevancyMode)}
              data-testid="rel-mode"
            >
              <option value="exact">exact</option>
              <option value="incremental">incremental (LVLM-Interpret)</option>
            </select>
          </label>
          <label>
            map{" "}
            <select
              value={kind}
              onChange={(e) => setKind((e.target as HTMLSelectElement).value as RelevancyKind)}
              data-testid="rel-kind"
            >
              {KINDS.map((k) => (
                <option key={k.value} value={k.value}>
                  {k.label}
                </option>
              ))}
            </select>
          </label>
          <label>
            per{" "}
            <select
              value={by}
              onChange={(e) => setBy((e.target as HTMLSelectElement).value as MapGrouping)}
              data-testid="rel-by"
            >
              <option value="word">word</option>
              <option value="token">token</option>
            </select>
          </label>
          <label>
            <input
              type="checkbox"
              checked={showSeparators}
              onChange={(e) => setShowSeparators((e.target as HTMLInputElement).checked)}
            />{" "}
            punctuation
          </label>
          <SharedScaleToggle />
        </div>
        <p class="muted" data-export="skip">
          Select answer tokens to compute (marked ones are done: {computed.length}/{run.tokens.length}). Each
          token costs a backward pass of the model.
        </p>
        <TokenChips
          tokens={run.tokens}
          selected={sel.sel}
          marked={computedSet}
          onToggle={sel.toggle}
          testId="rel-tokens"
        />
        <div class="actions" data-export="skip">
          <button
            type="button"
            onClick={() => compute(sel.sorted)}
            disabled={busy || sel.sorted.length === 0}
            data-testid="rel-compute-selected"
          >
            Compute selected ({sel.sorted.length})
          </button>
          <button
            type="button"
            class="secondary"
            onClick={() => compute("all")}
            disabled={busy}
            data-testid="rel-compute-all"
          >
            Compute all
          </button>
        </div>
        {showJob && jobFor && (
          <JobProgress
            job={job}
            onCancel={cancel}
            label={relevancyName(jobFor.mode, jobFor.kind)}
            doneText={`${relevancyName(jobFor.mode, jobFor.kind)} computed.`}
          />
        )}
        <ErrorBox error={maps.error} />
        {computed.length === 0 && (
          <p class="muted" data-testid="rel-nothing">
            Nothing computed yet: {relevancyName(mode, kind)}.
          </p>
        )}
        {items.length > 0 && (
          <>
            <div class="head-grid" data-testid="rel-maps">
              {items.slice(0, shownMaps).map((it) => (
                <div
                  key={it.tokens.join(",")}
                  class={`head-card clickable${chosenText !== null && it.tokens.includes(chosenText) ? " focus" : ""}`}
                  {...activate(() => setTextToken(it.tokens[it.tokens.length - 1]))}
                >
                  <ImageMap
                    image={image}
                    map={it.map}
                    geometry={run.image}
                    size={170}
                    lo={settings.scale === "shared" ? lo : undefined}
                    hi={settings.scale === "shared" ? hi : undefined}
                    testId="rel-map"
                  />
                  <div class="caption" data-testid="rel-label">
                    {it.label || "␣"}
                  </div>
                  {settings.scale !== "shared" && <MapScale map={it.map} width={170} />}
                </div>
              ))}
            </div>
            {items.length > shownMaps && (
              <button
                type="button"
                class="secondary"
                data-export="skip"
                onClick={() => setShownMaps((n) => n + MAP_PAGE)}
                data-testid="rel-more"
              >
                Show {Math.min(MAP_PAGE, items.length - shownMaps)} more maps ({shownMaps} of {items.length}{" "}
                shown)
              </button>
            )}
            {settings.scale === "shared" && (
              <Colorbar lo={lo} hi={hi} label="all maps" testId="shared-colorbar" />
            )}
          </>
        )}
      </Panel>
      <Panel title="Text relevancy and image reliance" testId="rel-text">
        {llmComputed.length === 0 && (
          <p class="muted">
            Compute LLM relevancy for some tokens to see how the answer relies on the question and the image.
          </p>
        )}
        <ErrorBox error={text.error ?? reliance.error} />
        {reliance.data && (
          <>
            <h4>Answer tokens by reliance on the image (1) vs the text (0)</h4>
            <TokenChips
              tokens={run.tokens}
              values={relianceValues}
              lo={0}
              hi={1}
              cmap="coolwarm"
              selected={chosenSet}
              onToggle={(i) => llmComputed.includes(i) && setTextToken(i)}
              titles={relianceTitles}
              testId="reliance-tokens"
            />
          </>
        )}
        {text.data && chosenText !== null && (
          <div class="row wrap">
            <div class="figure">
              <h4>Token “{run.tokens[chosenText]}”: top question words vs the image</h4>
              <ChartBox
                type="bar"
                labels={text.data.wordsVsImage.bars.map((b) => b.label)}
                series={[
                  {
                    label: "relevancy",
                    values: text.data.wordsVsImage.bars.map((b) => b.value),
                    color: text.data.wordsVsImage.bars.map((b) =>
                      b.label === "max_img" ? "#d6604d" : "#4393c3",
                    ),
                  },
                ]}
                yTitle="relevancy"
                testId="rel-bars"
              />
              <span class="muted">image reliance {text.data.wordsVsImage.reliance.toFixed(2)}</span>
            </div>
            <div class="figure grow">
              <h4>Relevancy of every prompt token (image collapsed to its mean)</h4>
              <div class="tokens" data-testid="prompt-relevancy">
                {(() => {
                  const vals = text.data.entries.map((e) => e.value);
                  const [a, b] = extent([vals]);
                  return text.data.entries.map((e, i) => (
                    <span
                      key={i}
                      class="token"
                      style={{
                        background: cssColor(settings.cmap, e.value, a, b),
                        color: textOn(settings.cmap, e.value, a, b),
                      }}
                      title={`${e.label}: ${formatValue(e.value)}`}
                    >
                      {e.label || "␣"}
                    </span>
                  ));
                })()}
              </div>
            </div>
          </div>
        )}
      </Panel>
    </div>
  );
}
