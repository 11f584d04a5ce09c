/**
 * Attention summary (layer × head heatmaps of mean attention from the answer to the image and to the question;
 * click a cell to open that layer and head) and attention maps (per-head maps over the image for chosen answer
 * tokens and a layer, sorted by mean; the per-head mean strip; the patch selector).
 */
import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import { type AttentionSummary, api, type HeadImageMaps, type PatchAttention, type RunDetail } from "../api";
import { prefetch, type Query } from "../cache";
import { formatValue, neighbourToken } from "../heatmap";
import {
  Colorbar,
  ErrorBox,
  ExportPng,
  extent,
  ImageMap,
  MapScale,
  Panel,
  runCaption,
  SharedScaleToggle,
  TokenChips,
  tokenLabel,
  useAsync,
  useRunImage,
  useSelection,
  useSettings,
} from "./common";
import { HeadStrip, LayerHeadGrid } from "./grids";

/** The layer × head means of the whole run. */
function summaryQuery(run: RunDetail): Query<AttentionSummary> {
  return { key: `summary:${run.id}`, load: () => api.summary(run.id) };
}

/** Asks for what the summary shows when its tab is opened, before it is. */
export function prefetchSummary(run: RunDetail): void {
  prefetch(summaryQuery(run));
}

export function SummaryView({
  run,
  params,
  navigate,
}: {
  run: RunDetail;
  params: URLSearchParams;
  navigate: (h: string) => void;
}) {
  const image = useRunImage(run.id);
  const root = useRef<HTMLDivElement>(null);
  const summaryQ = summaryQuery(run);
  const { data, error } = useAsync(summaryQ.load, [run.id], summaryQ.key);
  const sel = params.has("layer")
    ? { layer: Number(params.get("layer")), head: Number(params.get("head") ?? 0) }
    : null;
  const select = (layer: number, head: number) =>
    navigate(`#/run/${run.id}/summary?layer=${layer}&head=${head}`);
  const detailQ = sel ? headsQuery(run, sel.layer, []) : null;
  const detail = useAsync(() => detailQ?.load() ?? Promise.resolve(null), [run.id, sel?.layer], detailQ?.key);
  const headMap = sel && detail.data ? detail.data.heads.find((h) => h.head === sel.head) : undefined;
  return (
    <div ref={root} class="view" data-testid="summary-view">
      <Panel
        title="Attention summary"
        tools={<ExportPng target={root} name={`attention-summary-${run.id}.png`} caption={runCaption(run)} />}
      >
        <p class="muted">
          Mean attention from the {run.layout.G} answer tokens to the image tokens ("Image-to-Answer") and to
          the question tokens ("Question-to-Answer"), per layer and head. Hover for values; click a cell to
          open that layer and head.
        </p>
        <ErrorBox error={error} />
        {data && (
          <div class="row wrap">
            <div class="figure" data-testid="summary-image">
              <h4>Image-to-Answer</h4>
              <LayerHeadGrid values={data.image} selected={sel} onSelect={select} testId="grid-image" />
              <Colorbar lo={extent(data.image)[0]} hi={extent(data.image)[1]} />
            </div>
            <div class="figure" data-testid="summary-question">
              <h4>Question-to-Answer</h4>
              <LayerHeadGrid values={data.question} selected={sel} onSelect={select} testId="grid-question" />
              <Colorbar lo={extent(data.question)[0]} hi={extent(data.question)[1]} />
            </div>
          </div>
        )}
      </Panel>
      {sel && (
        <Panel
          title={`Layer ${sel.layer}, head ${sel.head}`}
          testId="summary-detail"
          tools={
            <a
              class="button secondary"
              href={`#/run/${run.id}/maps?layer=${sel.layer}&head=${sel.head}`}
              data-export="skip"
            >
              Open layer {sel.layer} in attention maps
            </a>
          }
        >
          <ErrorBox error={detail.error} />
          {headMap && detail.data && (
            <div class="row wrap">
              <div class="figure">
                <ImageMap
                  image={image}
                  map={headMap.map}
                  geometry={run.image}
                  size={320}
                  testId="detail-map"
                />
                <Colorbar lo={Math.min(...headMap.map)} hi={headMap.max} />
                <span class="muted">
                  mean attention of all answer tokens over the image · mean {formatValue(headMap.mean)}
                </span>
              </div>
              <div class="figure">
                <h4>Layer {sel.layer}: mean image attention per head</h4>
                <HeadStrip
                  values={detail.data.headMeans}
                  selected={sel.head}
                  onSelect={(h) => select(sel.layer, h)}
                  testId="detail-strip"
                />
              </div>
            </div>
          )}
        </Panel>
      )}
    </div>
  );
}

/** Every head's map of one layer, averaged over the chosen answer tokens (none: all of them). */
function headsQuery(run: RunDetail, layer: number, tokens: number[]): Query<HeadImageMaps> {
  return {
    key: `heads:${run.id}:${layer}:${tokens.join(",")}`,
    load: () => api.heads(run.id, layer, tokens),
  };
}

/** The layer the maps show: the link's, else the last. */
function mapsLayer(run: RunDetail, fromLink: string | null): number {
  const L = run.layout.layers;
  return Math.min(L - 1, Math.max(0, Number(fromLink ?? L - 1)));
}

/** Asks for what the maps view shows when its tab is opened, before it is. */
export function prefetchMaps(run: RunDetail): void {
  prefetch(headsQuery(run, mapsLayer(run, null), []));
}

export function MapsView({
  run,
  params,
  navigate,
}: {
  run: RunDetail;
  params: URLSearchParams;
  navigate: (h: string) => void;
}) {
  const image = useRunImage(run.id);
  const root = useRef<HTMLDivElement>(null);
  const { settings } = useSettings();
  const L = run.layout.layers;
  const layer = mapsLayer(run, params.get("layer"));
  const focusHead = params.has("head") ? Number(params.get("head")) : null;
  const tokens = useSelection([]);
  // Asked at once on every change (no debounce): an answer to a superseded selection is dropped.
  const debounced = tokens.sorted;
  const headsQ = headsQuery(run, layer, debounced);
  const { data, error, loading } = useAsync(headsQ.load, [run.id, layer, debounced.join(",")], headsQ.key);
  const setLayer = (l: number) =>
    navigate(`#/run/${run.id}/maps?layer=${l}${focusHead !== null ? `&head=${focusHead}` : ""}`);
  const [lo, hi] = data ? [data.min, data.max] : [0, 1];
  const size = run.layout.heads > 16 ? 150 : 190;
  useEffect(() => {
    if (focusHead === null || !data) return;
    document.querySelector(`[data-head="${focusHead}"]`)?.scrollIntoView({ block: "nearest" });
  }, [focusHead, data]);
  return (
    <div ref={root} class="view" data-testid="maps-view">
      <Panel
        title="Attention maps"
        tools={
          <ExportPng
            target={root}
            name={`attention-maps-${run.id}-layer${layer}.png`}
            caption={runCaption(run)}
          />
        }
      >
        <div class="controls" data-export="skip">
          <label>
            layer{" "}
            <input
              type="range"
              min={0}
              max={L - 1}
              value={layer}
              onInput={(e) => setLayer(Number((e.target as HTMLInputElement).value))}
              data-testid="layer-range"
            />
            <select
              value={layer}
              onChange={(e) => setLayer(Number((e.target as HTMLSelectElement).value))}
              data-testid="layer-select"
            >
              {Array.from({ length: L }, (_, l) => (
                <option key={l} value={l}>
                  {l}
                </option>
              ))}
            </select>
          </label>
          <button type="button" class="secondary" onClick={() => tokens.set(new Set())}>
            All tokens
          </button>
          <SharedScaleToggle />
          <span class="muted">
            Click answer tokens to average over them (shift-click: range); none selected = all.
          </span>
        </div>
        <TokenChips tokens={run.tokens} selected={tokens.sel} onToggle={tokens.toggle} testId="map-tokens" />
        <ErrorBox error={error} />
        {data && (
          <>
            <p class="muted">
              Layer {layer} ·{" "}
              {debounced.length
                ? `tokens ${debounced.map((k) => tokenLabel(run.tokens[k])).join(" ")}`
                : "all answer tokens"}{" "}
              · heads sorted by mean attention to the image{loading ? " · updating…" : ""}
            </p>
            <div class="figure">
              <h4>Mean attention to the image per head</h4>
              <HeadStrip values={data.headMeans} selected={focusHead} testId="head-strip" />
            </div>
            <div class="head-grid" data-testid="head-maps">
              {data.heads.map((h) => (
                <div
                  key={h.head}
                  class={`head-card${h.head === focusHead ? " focus" : ""}`}
                  data-head={h.head}
                >
                  <ImageMap
                    image={image}
                    map={h.map}
                    geometry={run.image}
                    size={size}
                    lo={settings.scale === "shared" ? lo : undefined}
                    hi={settings.scale === "shared" ? hi : undefined}
                    testId="head-map"
                  />
                  <div class="caption">
                    head {h.head} · mean {formatValue(h.mean)}
                  </div>
                  {settings.scale !== "shared" && <MapScale map={h.map} width={size} />}
                </div>
              ))}
            </div>
            {settings.scale === "shared" && (
              <Colorbar lo={lo} hi={hi} label="all maps" testId="shared-colorbar" />
            )}
          </>
        )}
      </Panel>
      <PatchSelector run={run} layer={layer} image={image} />
    </div>
  );
}

function PatchSelector({
  run,
  layer,
  image,
}: {
  run: RunDetail;
  layer: number;
  image: HTMLImageElement | null;
}) {
  const geo = run.image;
  const [patches, setPatches] = useState<Set<number>>(new Set());
  const mode = useRef<"add" | "remove">("add");
  const [head, setHead] = useState<number | "mean">("mean");
  const [result, setResult] = useState<PatchAttention | null>(null);
  const [error, setError] = useState<string | null>(null);
  const { settings } = useSettings();
  const list = useMemo(() => [...patches].sort((a, b) => a - b), [patches]);
  useEffect(() => {
    if (list.length === 0) {
      setResult(null);
      return;
    }
    let live = true;
    const t = setTimeout(() => {
      api.patches(run.id, layer, list).then(
        (r) => live && (setResult(r), setError(null)),
        (e) => live && setError((e as Error).message),
      );
    }, 120);
    return () => {
      live = false;
      clearTimeout(t);
    };
  }, [run.id, layer, list.join(",")]);
  const drag = useRef<{ start: number; base: Set<number> } | null>(null);
  /**
   * Click toggles a patch; dragging adds (or, starting on a selected patch, removes) every patch whose centre
   * lies in the rectangle spanned by the first and the current patch (on the original picture).
   */
  const apply = (p: number, first: boolean) => {
    if (first) {
      drag.current = { start: p, base: new Set(patches) };
      mode.current = patches.has(p) ? "remove" : "add";
    }
    const d = drag.current;
    if (!d) return;
    const a = geo.boxes[d.start];
    const b = geo.boxes[p];
    if (!a || !b) return;
    const [x0, y0, x1, y1] = [
      Math.min(a[0], b[0]),
      Math.min(a[1], b[1]),
      Math.max(a[2], b[2]),
      Math.max(a[3], b[3]),
    ];
    const n = new Set(d.base);
    geo.boxes.forEach((q, k) => {
      if (!q || q[2] <= q[0] || q[3] <= q[1]) return;
      const cx = (q[0] + q[2]) / 2;
      const cy = (q[1] + q[3]) / 2;
      if (cx < x0 || cx > x1 || cy < y0 || cy > y1) return;
      if (mode.current === "add") n.add(k);
      else n.delete(k);
    });
    setPatches(n);
  };
  /** The keyboard's cursor: arrows move it, Space/Enter toggle its patch, Shift+arrow adds as it moves. */
  const [cursor, setCursor] = useState<number | null>(null);
  const onKey = (e: KeyboardEvent) => {
    const dir = ({ ArrowLeft: "left", ArrowRight: "right", ArrowUp: "up", ArrowDown: "down" } as const)[
      e.key as "ArrowLeft"
    ];
    const at = cursor ?? neighbourToken(geo, -1, "right");
    if (dir) {
      e.preventDefault();
      const next = cursor === null ? at : neighbourToken(geo, at, dir);
      setCursor(next);
      if (e.shiftKey && next >= 0) setPatches((s) => new Set(s).add(next));
    } else if ((e.key === " " || e.key === "Enter") && at >= 0) {
      e.preventDefault();
      setCursor(at);
      setPatches((s) => {
        const n = new Set(s);
        if (n.has(at)) n.delete(at);
        else n.add(at);
        return n;
      });
    } else if (e.key === "Escape") setPatches(new Set());
  };
  const values = result ? (head === "mean" ? result.tokenMean : result.perHeadToken[head]) : null;
  const [lo, hi] = values ? extent([values]) : [0, 1];
  const valueTitles = useMemo(() => values?.map((v, i) => `token ${i}: ${formatValue(v)}`), [values]);
  return (
    <Panel title="Patch selector" testId="patch-selector">
      <p class="muted">
        Click or drag over image patches (or focus the picture: arrow keys move, Space selects): how much each
        answer token of layer {layer} attends to the selected patches (mean over the selected patches).
      </p>
      <div class="row wrap">
        <div class="figure" data-export-keep>
          <ImageMap
            image={image}
            map={null}
            geometry={geo}
            size={300}
            gridLines
            outline={list}
            testId="patch-canvas"
            onPatchDown={(p) => apply(p, true)}
            onPatchEnter={(p) => apply(p, false)}
            onKeyDown={onKey}
            cursor={cursor}
            label={`patch selector: ${list.length} selected${cursor !== null && cursor >= 0 ? `, cursor on ${geo.labels[cursor] ?? `token ${cursor}`}` : ""}. Arrow keys move, Space selects, Shift+arrow adds, Escape clears.`}
          />
          <div class="controls" data-export="skip">
            <span class="muted">
              {list.length} patch{list.length === 1 ? "" : "es"} selected
            </span>
            <button type="button" class="secondary" onClick={() => setPatches(new Set())}>
              Clear
            </button>
          </div>
        </div>
        <div class="figure grow">
          <ErrorBox error={error} />
          {!result && <p class="muted">Select patches to see the answer's attention to them.</p>}
          {result && values && (
            <>
              <label data-export="skip">
                heads{" "}
                <select
                  value={String(head)}
                  onChange={(e) =>
                    setHead(
                      (e.target as HTMLSelectElement).value === "mean"
                        ? "mean"
                        : Number((e.target as HTMLSelectElement).value),
                    )
                  }
                  data-testid="patch-head"
                >
                  <option value="mean">mean over heads</option>
                  {result.headMean.map((_, h) => (
                    <option key={h} value={h}>
                      head {h}
                    </option>
                  ))}
                </select>
              </label>
              <TokenChips
                tokens={run.tokens}
                values={values}
                lo={lo}
                hi={hi}
                cmap={settings.cmap}
                titles={valueTitles}
                testId="patch-tokens"
              />
              <Colorbar lo={lo} hi={hi} label="attention to the selected patches" width={200} />
              <h4>Per-head mean over the answer</h4>
              <HeadStrip
                values={result.headMean}
                selected={head === "mean" ? null : head}
                onSelect={(h) => setHead(h)}
                testId="patch-head-strip"
              />
            </>
          )}
        </div>
      </div>
    </Panel>
  );
}
