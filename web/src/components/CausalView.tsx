/**
 * Causality: choose an answer token → per-head explanation patches on the image, the head importance chart,
 * the causal graph of the explanation (cytoscape; image-patch thumbnails and words as nodes; PAG edge marks:
 * arrowhead, tail, circle) and the explanation's growth with the search radius.
 */
import cytoscape from "cytoscape";
import { useContext, useEffect, useLayoutEffect, useMemo, useRef, useState } from "preact/hooks";
import {
  api,
  type CausalHeadView,
  type CausalView as CausalViewData,
  type ImageGeometry,
  type Mark,
  type RunDetail,
} from "../api";
import { forget, prefetch, type Query } from "../cache";
import { formatValue } from "../heatmap";
import { nowIfOnScreen, whenIdle } from "../idle";
import { ChartBox } from "./charts";
import {
  activate,
  Colorbar,
  ErrorBox,
  ExportPng,
  ImageMap,
  IndexSelect,
  JobProgress,
  Panel,
  runCaption,
  TokenChips,
  useAsync,
  useJob,
  useRunImage,
} from "./common";
import { ViewShown } from "./KeptViews";

/** Node labels' size on screen, in CSS pixels. */
const LABEL_PX = 12;

const ARROW: Record<Mark, string> = { arrow: "triangle", circle: "circle", tail: "none" };

/** An image token's box of the original picture as a small data URL (node thumbnails); none without a box. */
function patchThumb(img: HTMLImageElement, geo: ImageGeometry, patch: number, size = 48): string | undefined {
  const b = geo.boxes[patch];
  if (!b || b[2] <= b[0] || b[3] <= b[1]) return undefined;
  const c = document.createElement("canvas");
  c.width = size;
  c.height = size;
  // Boxes are in original pixels; the loaded image may be scaled (naturalWidth is the file's width).
  const sx = img.naturalWidth / geo.width;
  const sy = img.naturalHeight / geo.height;
  const ctx = c.getContext("2d")!;
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(img, b[0] * sx, b[1] * sy, (b[2] - b[0]) * sx, (b[3] - b[1]) * sy, 0, 0, size, size);
  return c.toDataURL("image/png");
}

const TOKEN_KEY = "lvlm-causal-token";

/** The answer token last chosen on the Causality tab of each run (this browser session). */
function rememberedTokens(): Record<string, number> {
  try {
    return JSON.parse(sessionStorage.getItem(TOKEN_KEY) ?? "{}") as Record<string, number>;
  } catch {
    return {};
  }
}

function rememberToken(runId: string, token: number): void {
  try {
    sessionStorage.setItem(TOKEN_KEY, JSON.stringify({ ...rememberedTokens(), [runId]: token }));
  } catch {
    // Storage full or denied: the tab then opens on its default token.
  }
}

/**
 * The token the tab shows: the link's, else the one last chosen for this run, else the first explained one,
 * else the last token — so coming back to the tab finds a computed result where it was left.
 */
export function causalToken(run: RunDetail, fromLink: string | null): number {
  const G = run.layout.G;
  const remembered = rememberedTokens()[run.id];
  const k =
    fromLink !== null && fromLink !== ""
      ? Number(fromLink)
      : (remembered ?? (run.analyses.causal.length ? Math.min(...run.analyses.causal) : G - 1));
  return Number.isFinite(k) ? Math.min(G - 1, Math.max(0, Math.trunc(k))) : G - 1;
}

/** A token's stored explanation (null where none is). */
function causalQuery(run: RunDetail, token: number): Query<CausalViewData | null> {
  const computed = run.analyses.causal.includes(token);
  return {
    key: `causal:${run.id}:${token}:${computed}`,
    load: () => (computed ? api.causal(run.id, token) : Promise.resolve(null)),
  };
}

/** Asks for what the view shows when its tab is opened, before it is. */
export function prefetchCausal(run: RunDetail): void {
  prefetch(causalQuery(run, causalToken(run, null)));
}

/** How far off the screen a graph still gets its renderer, in an idle period (CSS pixels). */
const NEAR_MARGIN = 200;

function CausalGraph({
  head,
  image,
  geometry,
  radius,
  explanationOnly,
}: {
  head: CausalHeadView;
  image: HTMLImageElement | null;
  geometry: ImageGeometry;
  radius: number;
  explanationOnly: boolean;
}) {
  const box = useRef<HTMLDivElement>(null);
  const graph = useRef<{
    cy: cytoscape.Core;
    readable: () => void;
    mounted: boolean;
    fitted: boolean;
  } | null>(null);
  const shown = useContext(ViewShown);
  // A view rendered hidden (ahead of its tab's click) builds its graph without a renderer: nothing to fit to.
  const shownNow = useRef(shown);
  shownNow.current = shown;
  const [count, setCount] = useState({ nodes: 0, edges: 0, images: 0, unlabelled: 0 });
  /** The labels' size on screen (CSS pixels), for tests and the curious. */
  const [labelPx, setLabelPx] = useState(0);
  useEffect(() => {
    const el = box.current;
    if (!el) return;
    let built: cytoscape.Core | null = null;
    const build = () => {
      built = buildGraph(el);
    };
    // A graph below the screen (the usual place on a long answer) or in a hidden view is built in an idle
    // period, so the tab's first paint does not wait for it; one on the screen is built at once.
    const cancel = nowIfOnScreen(el, build);
    return () => {
      cancel();
      graph.current = null;
      built?.destroy();
    };
  }, [head, image, geometry, radius, explanationOnly]);
  /** The graph in `el` (with a renderer when the view is shown, else headless), kept in `graph`. */
  function buildGraph(el: HTMLDivElement): cytoscape.Core {
    const maxR = Math.max(0, ...head.nodes.map((n) => n.radius ?? 0));
    const keep = new Set(
      head.nodes
        .filter((n) =>
          explanationOnly
            ? n.inExplanation && n.radius !== null && n.radius <= radius
            : n.radius === null || n.radius <= radius,
        )
        .map((n) => n.id),
    );
    // Rings by search radius around the explained position: the explanation grows outwards.
    const shown = head.nodes.filter((n) => keep.has(n.id));
    const rings = new Map<number, number[]>();
    for (const n of shown) {
      const lv = n.radius ?? maxR + 1;
      rings.set(lv, [...(rings.get(lv) ?? []), n.id]);
    }
    const pos = new Map<number, { x: number; y: number }>();
    let R = 0;
    for (const lv of [...rings.keys()].sort((a, b) => a - b)) {
      const ids = rings.get(lv)!;
      R = lv === 0 ? 0 : Math.max(R + 110, (ids.length * 70) / (2 * Math.PI));
      ids.forEach((id, i) => {
        const a = (2 * Math.PI * i) / ids.length + lv * 0.6 - Math.PI / 2;
        pos.set(id, { x: R * Math.cos(a), y: R * Math.sin(a) });
      });
    }
    const nodes = shown.map((n) => ({
      position: pos.get(n.id)!,
      data: {
        id: String(n.id),
        // Image nodes show their patch ("patch 3,4") under the thumbnail, words and the target their text.
        label: n.label,
        title: n.label,
        kind: n.kind,
        level: n.radius ?? maxR + 1,
        thumb:
          n.kind === "image" && image && n.patch !== null ? patchThumb(image, geometry, n.patch) : undefined,
      },
    }));
    const edges = head.edges
      .filter((e) => keep.has(e.source) && keep.has(e.target))
      .map((e) => ({
        data: {
          id: `${e.source}-${e.target}`,
          source: String(e.source),
          target: String(e.target),
          srcShape: ARROW[e.sourceMark],
          tgtShape: ARROW[e.targetMark],
          srcFill: e.sourceMark === "circle" ? "hollow" : "filled",
          tgtFill: e.targetMark === "circle" ? "hollow" : "filled",
          text: e.text,
        },
      }));
    const visible = shownNow.current;
    const cy = cytoscape({
      container: visible ? el : undefined,
      headless: !visible,
      // Headless, cytoscape keeps no style unless asked: the label sizes are set on it before it is shown.
      styleEnabled: true,
      elements: [...nodes, ...edges],
      userZoomingEnabled: true,
      style: [
        {
          selector: "node",
          style: {
            label: "data(label)",
            "font-size": 11,
            "text-valign": "bottom",
            "text-margin-y": 4,
            width: 40,
            height: 40,
            "background-color": "#9ecae1",
            "border-width": 1,
            "border-color": "#3182bd",
          },
        },
        {
          selector: 'node[kind = "image"]',
          style: {
            shape: "rectangle",
            "background-image": "data(thumb)",
            "background-fit": "cover",
            "border-color": "#333",
          },
        },
        {
          selector: 'node[kind = "text"]',
          style: {
            shape: "round-rectangle",
            width: (n: cytoscape.NodeSingular) => 14 + 7 * String(n.data("label")).length,
            height: 24,
            "text-valign": "center",
            "text-margin-y": 0,
          },
        },
        {
          selector: 'node[kind = "target"]',
          style: {
            shape: "round-rectangle",
            width: (n: cytoscape.NodeSingular) => 18 + 7 * String(n.data("label")).length,
            height: 28,
            "text-valign": "center",
            "text-margin-y": 0,
            "background-color": "#fdae6b",
            "border-color": "#e6550d",
            "border-width": 2,
          },
        },
        {
          selector: "edge",
          style: {
            width: 1.6,
            "line-color": "#555",
            "curve-style": "bezier",
            "source-arrow-shape": "data(srcShape)" as never,
            "target-arrow-shape": "data(tgtShape)" as never,
            "source-arrow-fill": "data(srcFill)" as never,
            "target-arrow-fill": "data(tgtFill)" as never,
            "source-arrow-color": "#555",
            "target-arrow-color": "#555",
            "arrow-scale": 1.3,
          },
        },
      ],
      layout: { name: "preset", fit: true, padding: 36 },
      maxZoom: 1.6,
      minZoom: 0.2,
    });
    if (visible) cy.fit(undefined, 36);
    // Labels keep a readable size on screen however far a large graph is zoomed out to fit: the font size
    // (in graph units) follows the zoom, and text nodes grow with it.
    const readable = () => {
      const px = LABEL_PX / cy.zoom();
      cy.style()
        .selector("node")
        .style("font-size", px)
        .selector('node[kind = "text"], node[kind = "target"]')
        .style({
          width: (n: cytoscape.NodeSingular) => px * (1.3 + 0.62 * String(n.data("label")).length),
          height: px * 2.1,
        })
        .update();
      setLabelPx(Math.round(px * cy.zoom() * 10) / 10);
    };
    readable();
    cy.on("zoom", readable);
    setCount({
      nodes: cy.nodes().length,
      edges: cy.edges().length,
      images: nodes.filter((n) => n.data.kind === "image").length,
      unlabelled: nodes.filter((n) => !n.data.label).length,
    });
    graph.current = { cy, readable, mounted: visible, fitted: visible };
    return cy;
  }
  // Whether the graph is on or near the screen (a tab shown again gives it a renderer only then).
  // Where the graph's box is: on the screen, within NEAR_MARGIN of it, or farther (a graph rendered hidden
  // waits for the observer's first word once shown; most often it is below the fold).
  const [near, setNear] = useState<"on" | "near" | "off">(shown ? "on" : "off");
  useEffect(() => {
    const el = box.current;
    if (!el || typeof IntersectionObserver === "undefined") return;
    // A detached box (a hidden view) tells nothing: what was last seen in the page holds, so a view rendered
    // hidden gets its graph's renderer in the very commit that shows it.
    const io = new IntersectionObserver(
      (es) => {
        if (!el.isConnected) return;
        const e = es[es.length - 1];
        const r = e.boundingClientRect;
        setNear(!e.isIntersecting ? "off" : r.bottom > 0 && r.top < innerHeight ? "on" : "near");
      },
      { rootMargin: `${NEAR_MARGIN}px` },
    );
    io.observe(el);
    return () => io.disconnect();
  }, []);
  // Cytoscape redraws in a loop of animation frames: a hidden tab's graph gives up its renderer (the graph and
  // its layout stay) and gets a new one when shown again: at once on the screen, in an idle period when only
  // near it (ready before it is scrolled to, without delaying the tab's first paint). A layout effect, so the
  // renderer goes in the same commit that takes the view out of the page (no frame drawn while detached).
  useLayoutEffect(() => {
    const g = graph.current;
    const el = box.current;
    if (!g || !el) return;
    if (!shown && g.mounted) {
      g.cy.unmount();
      g.mounted = false;
      return;
    }
    if (!shown || g.mounted || near === "off") return;
    const mount = () => {
      if (g.mounted || graph.current !== g) return;
      // A new renderer starts from the options' style: the readable label sizes are set again.
      g.cy.mount(el);
      if (!g.fitted) g.cy.fit(undefined, 36);
      g.fitted = true;
      g.readable();
      g.mounted = true;
    };
    if (near === "on") mount();
    else return whenIdle(mount);
  }, [shown, near]);
  return (
    <div
      ref={box}
      class="cy"
      role="img"
      aria-label={`causal graph of head ${head.head}: ${count.nodes} nodes, ${count.edges} edges`}
      data-testid="causal-graph"
      data-nodes={count.nodes}
      data-edges={count.edges}
      data-label-px={labelPx}
      data-image-nodes={count.images}
      data-unlabelled={count.unlabelled}
    />
  );
}

export function CausalView({
  run,
  params,
  navigate,
  onChanged,
}: {
  run: RunDetail;
  params: URLSearchParams;
  navigate: (h: string) => void;
  onChanged: () => void;
}) {
  const image = useRunImage(run.id);
  const root = useRef<HTMLDivElement>(null);
  const token = causalToken(run, params.get("token"));
  useEffect(() => rememberToken(run.id, token), [run.id, token]);
  const [layer, setLayer] = useState(run.layout.layers - 1);
  const [version, setVersion] = useState(0);
  const computed = useMemo(() => new Set(run.analyses.causal), [run.analyses.causal]);
  const selectedToken = useMemo(() => new Set([token]), [token]);
  const { job, start, cancel, busy } = useJob({
    done: () => {
      forget(`causal:${run.id}:`);
      setVersion((v) => v + 1);
      onChanged();
    },
  });
  const viewQ = causalQuery(run, token);
  const view = useAsync(viewQ.load, [run.id, token, version, computed.has(token)], viewQ.key);
  const [headSel, setHeadSel] = useState<number | null>(null);
  const [explanationOnly, setExplanationOnly] = useState(true);
  const data = view.data;
  const best = useMemo(() => {
    if (!data) return 0;
    let b = 0;
    data.heads.forEach((h, i) => {
      if ((h.importance ?? -1) > (data.heads[b].importance ?? -1)) b = i;
    });
    return data.heads[b]?.head ?? 0;
  }, [data]);
  const head = data?.heads.find((h) => h.head === (headSel ?? best)) ?? null;
  // Each head's explanation patches as a map (built once per result, so the canvases are not redrawn).
  const headMaps = useMemo(
    () =>
      (data?.heads ?? []).map((h) => {
        const map = new Array<number>(run.image.boxes.length).fill(0);
        h.explanationPatches.forEach((p, i) => {
          map[p] = h.patchWeights[i] ?? 1;
        });
        return map;
      }),
    [data, run.image.boxes.length],
  );
  const maxR = data?.params.max_range ?? 3;
  const [radius, setRadius] = useState(maxR);
  useEffect(() => setRadius(maxR), [maxR]);
  const setToken = (k: number) => navigate(`#/run/${run.id}/causal?token=${k}`);

  return (
    <div ref={root} class="view" data-testid="causal-view">
      <Panel
        title="Causal explanation"
        tools={
          <ExportPng target={root} name={`causality-${run.id}-token${token}.png`} caption={runCaption(run)} />
        }
      >
        <p class="muted" data-export="skip">
          Choose an answer token (marked: explained). CLEANN learns a causal graph over the image patches and
          words the token's position attends to, per head, and reads the explanation off it.
        </p>
        <TokenChips
          tokens={run.tokens}
          selected={selectedToken}
          marked={computed}
          onToggle={(i) => setToken(i)}
          testId="causal-tokens"
        />
        <div class="actions" data-export="skip">
          <IndexSelect
            label="layer"
            count={run.layout.layers}
            value={layer}
            onChange={(v) => setLayer(Number(v))}
            testId="causal-layer"
          />
          <button
            type="button"
            onClick={() => start(() => api.computeCausal(run.id, token, layer))}
            disabled={busy}
            data-testid="causal-compute"
          >
            {computed.has(token) ? "Recompute" : "Explain"} token {token} “{run.tokens[token]}”
          </button>
        </div>
        <JobProgress
          job={job}
          onCancel={cancel}
          label="Causal discovery"
          doneText="Causal discovery finished."
        />
        <ErrorBox error={view.error} />
        {!computed.has(token) && !busy && <p class="muted">Token {token} is not explained yet.</p>}
        {data && (
          <div class="row wrap">
            <div class="figure">
              <h4>All heads (layer {data.layer}): explanation patch weights</h4>
              <ImageMap
                image={image}
                map={data.patchWeights}
                geometry={run.image}
                size={260}
                lo={0}
                hi={1}
                testId="causal-weights"
              />
              <Colorbar lo={0} hi={1} />
            </div>
            <div class="figure">
              <h4>Head importance</h4>
              <ChartBox
                type="bar"
                labels={data.heads.map((h) => String(h.head))}
                series={[
                  {
                    label: "importance",
                    values: data.heads.map((h) => h.importance),
                    color: data.heads.map((h) => (h.head === head?.head ? "#e6550d" : "#6baed6")),
                  },
                ]}
                xTitle="head"
                yTitle={["max image /", "max text attention"]}
                onClick={(i) => setHeadSel(data.heads[i].head)}
                testId="head-importance"
              />
            </div>
          </div>
        )}
      </Panel>
      {data && (
        <Panel title="Per-head explanation patches" testId="causal-heads">
          <div class="head-grid">
            {data.heads.map((h, hi) => {
              const map = headMaps[hi];
              return (
                <div
                  key={h.head}
                  class={`head-card clickable${h.head === head?.head ? " focus" : ""}`}
                  {...activate(() => setHeadSel(h.head))}
                >
                  <ImageMap
                    image={image}
                    map={map}
                    geometry={run.image}
                    size={150}
                    lo={0}
                    hi={1}
                    outline={h.explanationPatches}
                    testId="causal-head-map"
                  />
                  <div class="caption">
                    head {h.head} · {h.explanationPatches.length} patch
                    {h.explanationPatches.length === 1 ? "" : "es"} · imp.{" "}
                    {h.importance === null ? "–" : formatValue(h.importance)}
                  </div>
                </div>
              );
            })}
          </div>
        </Panel>
      )}
      {data && head && (
        <Panel title={`Causal graph: head ${head.head}`} testId="causal-graph-panel">
          <div class="controls" data-export="skip">
            <label>
              search radius ≤ {radius}{" "}
              <input
                type="range"
                min={0}
                max={maxR}
                value={radius}
                onInput={(e) => setRadius(Number((e.target as HTMLInputElement).value))}
                data-testid="causal-radius"
              />
            </label>
            <label>
              <input
                type="checkbox"
                checked={explanationOnly}
                onChange={(e) => setExplanationOnly((e.target as HTMLInputElement).checked)}
              />{" "}
              explanation only
            </label>
            <span class="muted">
              Edge marks as in PAGs: ▶ arrowhead, ○ circle (undetermined), plain end = tail.
            </span>
          </div>
          <div class="row wrap">
            <CausalGraph
              head={head}
              image={image}
              geometry={run.image}
              radius={radius}
              explanationOnly={explanationOnly}
            />
            <div class="figure">
              <h4>Explanation growth by search radius</h4>
              <ChartBox
                type="bar"
                stacked
                labels={head.growth.map((g) => String(g.radius))}
                series={[
                  { label: "image patches", values: head.growth.map((g) => g.image), color: "#3182bd" },
                  {
                    label: "words (and the explained position)",
                    values: head.growth.map((g) => g.text),
                    color: "#fd8d3c",
                  },
                ]}
                xTitle="radius"
                yTitle="explanation nodes"
                width={320}
                testId="causal-growth"
              />
            </div>
          </div>
        </Panel>
      )}
    </div>
  );
}
