/** Shared pieces of the views: data hooks, view settings, heatmap canvases, token chips, job progress. */
import type { ComponentChildren, FunctionComponent, RefObject } from "preact";
import { Component, createContext, h } from "preact";
import { useCallback, useContext, useEffect, useLayoutEffect, useMemo, useRef, useState } from "preact/hooks";
import { MAP_LAYERS, type MapLayer, mapLayer, mapLayerGrids } from "../../../src/interpret/views/map-layers";
import { ApiError, api, followJob, type ImageGeometry, type JobInfo } from "../api";
import { cached, peek } from "../cache";
import { COLORMAPS, cssColor, textOn } from "../colormap";
import { type Caption, download, elementToPng } from "../export-png";
import {
  colorbarImage,
  drawGridLines,
  drawImageMap,
  fitSize,
  formatValue,
  type MapStyle,
  type MapValues,
  outlinePatches,
  tokenAt,
} from "../heatmap";
import { nowIfOnScreen } from "../idle";

export function errorText(e: unknown): string {
  if (e instanceof ApiError) return e.message;
  return e instanceof Error ? e.message : String(e);
}

/**
 * Runs an async loader when its deps change; results of superseded calls are dropped. With a cache key (one
 * that names everything the answer depends on), the answer is kept for the page's life: a view opened again
 * renders it at once, without a request or a "loading" pass.
 */
export function useAsync<T>(
  load: () => Promise<T>,
  deps: unknown[],
  cacheKey?: string,
): { data: T | null; error: string | null; loading: boolean; reload: () => void } {
  const hit = cacheKey ? peek<T>(cacheKey) : undefined;
  // Asked as the view renders, not one paint later in the effect: the server works while the page draws.
  // Once per key (a failed answer is not cached, so asking on every render would ask again and again); the
  // effect's first run for the key takes this very promise, later runs (new deps) ask the cache as before.
  const early = useRef<{ key: string; promise: Promise<T> | null } | null>(null);
  if (cacheKey && !hit && early.current?.key !== cacheKey) {
    const promise = cached(cacheKey, load);
    promise.catch(() => {});
    early.current = { key: cacheKey, promise };
  }
  const [state, setState] = useState<{ data: T | null; error: string | null; loading: boolean }>({
    data: hit ? hit.data : null,
    error: null,
    loading: !hit,
  });
  const [tick, setTick] = useState(0);
  useEffect(() => {
    if (cacheKey && peek(cacheKey) && tick === 0) {
      const d = peek<T>(cacheKey)!.data;
      setState((s) =>
        s.data === d && !s.loading && !s.error ? s : { data: d, error: null, loading: false },
      );
      return;
    }
    let live = true;
    setState((s) => ({ data: s.data, error: null, loading: true }));
    const kicked = early.current;
    const first = kicked && kicked.key === cacheKey ? kicked.promise : null;
    if (kicked && first) kicked.promise = null;
    const asked = cacheKey && tick === 0 ? (first ?? cached(cacheKey, load)) : load();
    asked.then(
      (data) => live && setState({ data, error: null, loading: false }),
      (e) => live && setState({ data: null, error: errorText(e), loading: false }),
    );
    return () => {
      live = false;
    };
  }, [...deps, cacheKey, tick]);
  const reload = useCallback(() => setTick((t) => t + 1), []);
  // A cached answer for the current key is shown in this very render (not one effect later).
  if (hit && !state.error) return { data: hit.data, error: null, loading: false, reload };
  return { ...state, reload };
}

/** Pictures already loaded, by run: a view opened again draws its maps once, on the picture, at once. */
const runImages = new Map<string, HTMLImageElement>();

/** The run's original image (maps are drawn on it through the image-token geometry), loaded once per run. */
export function useRunImage(runId: string): HTMLImageElement | null {
  const [img, setImg] = useState<HTMLImageElement | null>(() => runImages.get(runId) ?? null);
  useEffect(() => {
    const known = runImages.get(runId);
    if (known) {
      setImg(known);
      return;
    }
    setImg(null);
    const i = new Image();
    i.onload = () => {
      runImages.set(runId, i);
      setImg(i);
    };
    i.src = api.inputUrl(runId);
    return () => {
      i.onload = null;
    };
  }, [runId]);
  return img?.src.endsWith(api.inputUrl(runId)) ? img : (runImages.get(runId) ?? null);
}

export interface ViewSettings extends MapStyle {
  /** Colour scale of a group of maps: each map its own min–max, or one shared range. */
  scale: "per-map" | "shared";
  /** Pictures seen as a base view and high-res tiles (LLaVA-NeXT): which layer the maps show. */
  layer: MapLayer;
}

export const DEFAULT_SETTINGS: ViewSettings = {
  cmap: "turbo",
  opacity: 0.6,
  smooth: true,
  scale: "per-map",
  layer: "combined",
};

export const SettingsContext = createContext<{
  settings: ViewSettings;
  set: (s: Partial<ViewSettings>) => void;
}>({
  settings: DEFAULT_SETTINGS,
  set: () => {},
});

export const useSettings = () => useContext(SettingsContext);

/** `layered`: the run's picture has a base view and high-res tiles (the layer toggle is shown). */
export function SettingsBar({ layered = false }: { layered?: boolean }) {
  const { settings, set } = useSettings();
  return (
    <div class="settings-bar" data-export="skip">
      <label>
        colormap{" "}
        <select
          value={settings.cmap}
          onChange={(e) => set({ cmap: (e.target as HTMLSelectElement).value })}
          data-testid="cmap"
        >
          {Object.keys(COLORMAPS).map((k) => (
            <option key={k} value={k}>
              {k}
            </option>
          ))}
        </select>
      </label>
      <label>
        opacity{" "}
        <input
          type="range"
          min={0}
          max={1}
          step={0.05}
          value={settings.opacity}
          onInput={(e) => set({ opacity: Number((e.target as HTMLInputElement).value) })}
          data-testid="opacity"
        />
      </label>
      <label>
        <input
          type="checkbox"
          checked={settings.smooth}
          onChange={(e) => set({ smooth: (e.target as HTMLInputElement).checked })}
        />{" "}
        smooth
      </label>
      <label>
        scale{" "}
        <select
          value={settings.scale}
          onChange={(e) => set({ scale: (e.target as HTMLSelectElement).value as ViewSettings["scale"] })}
        >
          <option value="per-map">per map</option>
          <option value="shared">shared</option>
        </select>
      </label>
      {layered && (
        <label title="base view, high-res tiles, or their mean where both cover the picture">
          view{" "}
          <select
            value={settings.layer}
            onChange={(e) => set({ layer: (e.target as HTMLSelectElement).value as MapLayer })}
            data-testid="map-layer"
          >
            {MAP_LAYERS.map((k) => (
              <option key={k} value={k}>
                {k}
              </option>
            ))}
          </select>
        </label>
      )}
    </div>
  );
}

/** The view's own switch between one colour scale per map and one shared by all (the settings' scale). */
export function SharedScaleToggle() {
  const { settings, set } = useSettings();
  return (
    <label title="per map: each map spans the whole colormap; shared: equal values, equal colours">
      <input
        type="checkbox"
        checked={settings.scale === "shared"}
        onChange={(e) => set({ scale: (e.target as HTMLInputElement).checked ? "shared" : "per-map" })}
        data-testid="shared-scale"
      />{" "}
      same colour scale for all maps
    </label>
  );
}

export function Colorbar({
  lo,
  hi,
  width = 160,
  label,
  cmap,
  testId = "colorbar",
}: {
  lo: number;
  hi: number;
  width?: number;
  label?: string;
  /** A colormap other than the settings' (e.g. a diverging one for differences). */
  cmap?: string;
  testId?: string;
}) {
  const { settings } = useSettings();
  // An image and two labels, not a canvas: a view shows dozens of these, and a canvas each cost ~1 ms to
  // set up and composite, where images of one colormap share one decoded picture.
  return (
    <div class="colorbar" data-testid={testId} data-lo={lo} data-hi={hi} style={{ width: `${width}px` }}>
      {label && <span class="muted">{label}</span>}
      <div
        class="colorbar-scale"
        role="img"
        aria-label={`colour scale from ${formatValue(lo)} to ${formatValue(hi)}`}
      >
        <img src={colorbarImage(cmap ?? settings.cmap)} alt="" draggable={false} />
        <div class="colorbar-ends" aria-hidden="true">
          <span>{formatValue(lo)}</span>
          <span>{formatValue(hi)}</span>
        </div>
      </div>
    </div>
  );
}

/** A map's own colour scale (its min to max), shown under it when each map is scaled on its own. */
export function MapScale({ map, width }: { map: ArrayLike<number | null>; width: number }) {
  const [lo, hi] = extent([map]);
  return <Colorbar lo={lo} hi={hi} width={width} testId="map-colorbar" />;
}

export interface ImageMapProps {
  image: HTMLImageElement | null;
  /** One value per image token (null: none), or no map. */
  map: MapValues | null;
  /** Where each image token is on the original picture. */
  geometry: ImageGeometry;
  /** The longer side of the canvas (the picture's aspect ratio is kept). */
  size: number;
  lo?: number;
  hi?: number;
  outline?: number[];
  outlineColor?: string;
  gridLines?: boolean;
  testId?: string;
  title?: string;
  /** A colormap other than the settings' (e.g. a diverging one for differences). */
  cmap?: string;
  /** Image-token index under the pointer (only where a token covers the picture). */
  onPatchDown?: (patch: number) => void;
  onPatchEnter?: (patch: number) => void;
  /** What the canvas shows, for screen readers (default: the map's value range). */
  label?: string;
  /** Keyboard use (the patch selector): focusable, its keys, and the patch under the keyboard cursor. */
  onKeyDown?: (e: KeyboardEvent) => void;
  cursor?: number | null;
}

/**
 * The run's original picture with a heatmap over its image tokens, in the current colormap and opacity; what
 * no token covers (a crop's margins) shows the picture alone.
 */
/**
 * A component that re-renders only when `same(old, new)` is false. Not preact/compat's memo: importing compat
 * adds a hook that rewrites the props of every element the app creates, a cost paid on every render.
 */
export function memo<P extends object>(
  render: FunctionComponent<P>,
  same: (a: P, b: P) => boolean,
): FunctionComponent<P> {
  class Memo extends Component<P> {
    shouldComponentUpdate(next: P): boolean {
      return !same(this.props as P, next);
    }
    render(p: P) {
      return h(render, p);
    }
  }
  return Memo as unknown as FunctionComponent<P>;
}

/** Props equal but for handlers (read through a ref, so a new closure need not re-render a long list). */
function sameBesidesHandlers<P extends object>(a: P, b: P): boolean {
  const ka = Object.keys(a) as (keyof P)[];
  if (ka.length !== Object.keys(b).length) return false;
  return ka.every((k) => a[k] === b[k] || (typeof a[k] === "function" && typeof b[k] === "function"));
}

/**
 * The run's original picture with a heatmap over its image tokens (see {@link ImageMapProps}). Redrawn only
 * when what it shows changes: a view's re-render (a token chosen elsewhere) leaves its canvases alone.
 */
export const ImageMap = memo(ImageMapCanvas, sameBesidesHandlers);

function ImageMapCanvas(p: ImageMapProps) {
  const ref = useRef<HTMLCanvasElement>(null);
  const { settings } = useSettings();
  const [w, h] = fitSize(p.geometry, p.size);
  const handlers = useRef(p);
  handlers.current = p;
  // Before the paint when on the screen (the view shows with its maps in one frame, not blank canvases first),
  // else once the page is idle (maps below the screen, or in a view rendered ahead, do not hold up a paint).
  // biome-ignore lint/correctness/useExhaustiveDependencies: redraw exactly when what is drawn changes
  useLayoutEffect(() => {
    const c = ref.current;
    if (!c) return;
    return nowIfOnScreen(c, () => {
      const map = p.map && mapLayerGrids(p.geometry) ? mapLayer(p.map, p.geometry, settings.layer) : p.map;
      const style = p.cmap ? { ...settings, cmap: p.cmap } : settings;
      drawImageMap(c, p.image, map, p.geometry, style, p.lo, p.hi);
      if (p.gridLines) drawGridLines(c, p.geometry);
      if (p.outline?.length)
        outlinePatches(c, p.geometry, p.outline, p.outlineColor ?? "#00e5ff", "rgba(0,229,255,0.18)");
      if (p.cursor !== undefined && p.cursor !== null && p.cursor >= 0)
        outlinePatches(c, p.geometry, [p.cursor], "#ff2d95");
    });
  }, [
    p.image,
    p.map,
    p.geometry,
    settings.cmap,
    settings.opacity,
    settings.smooth,
    settings.layer,
    p.cmap,
    p.lo,
    p.hi,
    p.gridLines,
    p.outline,
    p.outlineColor,
    p.cursor,
    w,
    h,
  ]);
  const label = useMemo(() => {
    if (p.label) return p.label;
    if (!p.map) return "the run's image";
    const [lo, hi] = p.lo !== undefined && p.hi !== undefined ? [p.lo, p.hi] : extent([p.map]);
    return `${p.title ?? "heatmap"} over the image, values ${formatValue(lo)} to ${formatValue(hi)}`;
  }, [p.label, p.map, p.lo, p.hi, p.title]);
  const patchAt = (e: MouseEvent): number => {
    const r = ref.current!.getBoundingClientRect();
    const x = ((e.clientX - r.left) / r.width) * p.geometry.width;
    const y = ((e.clientY - r.top) / r.height) * p.geometry.height;
    return tokenAt(p.geometry, x, y);
  };
  return (
    <canvas
      ref={ref}
      class="image-map"
      width={w}
      height={h}
      data-testid={p.testId}
      title={p.title}
      role="img"
      aria-label={label}
      tabIndex={p.onKeyDown ? 0 : undefined}
      onKeyDown={p.onKeyDown ? (e) => handlers.current.onKeyDown?.(e) : undefined}
      onMouseDown={
        p.onPatchDown
          ? (e) => {
              e.preventDefault();
              const k = patchAt(e);
              if (k >= 0) handlers.current.onPatchDown?.(k);
            }
          : undefined
      }
      onMouseMove={
        p.onPatchEnter
          ? (e) => {
              if (!(e.buttons & 1)) return;
              const k = patchAt(e);
              if (k >= 0) handlers.current.onPatchEnter?.(k);
            }
          : undefined
      }
    />
  );
}

/** Props that make an element act as a button (click, Enter, Space) for mouse and keyboard users. */
export function activate(on: (e: MouseEvent | KeyboardEvent) => void) {
  return {
    role: "button" as const,
    tabIndex: 0,
    onClick: (e: MouseEvent) => on(e),
    onKeyDown: (e: KeyboardEvent) => {
      if (e.key === "Enter" || e.key === " ") {
        e.preventDefault();
        on(e);
      }
    },
  };
}

/** Visible text of a token: whitespace and empty tokens shown as symbols. */
export function tokenLabel(t: string): string {
  if (t === "") return "∅";
  if (t === "\n" || t === "<0x0A>") return "⏎";
  if (/^\s+$/.test(t)) return "␣";
  return t;
}

export interface TokenChipsProps {
  tokens: string[];
  selected?: Set<number>;
  onToggle?: (i: number, e: MouseEvent) => void;
  /** Colour each token by a value (with the colormap over [lo, hi]). */
  values?: (number | null)[];
  lo?: number;
  hi?: number;
  cmap?: string;
  titles?: string[];
  marked?: Set<number>;
  testId?: string;
}

/** The answer tokens as chips: selectable, optionally coloured by a value. */
export const TokenChips = memo(TokenChipList, sameBesidesHandlers);

/** The chip (its index) an event happened on, inside a chip list. */
function chipIndex(e: Event): number | null {
  const chip = (e.target as HTMLElement | null)?.closest?.("[data-index]") as HTMLElement | null;
  return chip ? Number(chip.dataset.index) : null;
}

/**
 * Chips rendered at first, and added each time the end of the list comes near its visible part: a long
 * answer's list (hundreds of chips in a box that shows a few lines) costs a view only what can be seen.
 */
export const CHIP_PAGE = 120;

/** How far below a list's visible part its chips are rendered ahead of scrolling (CSS pixels). */
const MORE_MARGIN = 60;
/** How far below the screen a list still counts as near it, and renders past its first page (CSS pixels). */
const NEAR_SCREEN = 200;

function TokenChipList(p: TokenChipsProps) {
  const { settings } = useSettings();
  const cmap = p.cmap ?? settings.cmap;
  const handlers = useRef(p);
  handlers.current = p;
  const [shown, setShown] = useState(CHIP_PAGE);
  const rest = Math.max(0, p.tokens.length - shown);
  // The end of the rendered chips: when it scrolls near the list's visible part, the next page renders.
  const end = useRef<HTMLSpanElement>(null);
  // Whether the list is on the screen or near it: a list farther down keeps its first page until scrolled to.
  const [near, setNear] = useState(false);
  // A list in the page near the screen is near from the start. (A view rendered into a detached element, as
  // kept views are, learns it from the observer below once it is in the page.)
  useLayoutEffect(() => {
    const list = end.current?.parentElement;
    if (list?.isConnected && list.getBoundingClientRect().top <= innerHeight + NEAR_SCREEN) setNear(true);
  }, []);
  // Once near, as many chips as fill the list's box (and a margin) in one go, before the next paint: the rows
  // the first page filled tell how many chips a pixel of height holds.
  useLayoutEffect(() => {
    const el = end.current;
    const list = el?.parentElement;
    if (!near || !el || !list || list.clientHeight === 0) return;
    const used = el.getBoundingClientRect().bottom - list.getBoundingClientRect().top + list.scrollTop;
    // Past the margin at which the observer below adds the next page, so it does not add one at once.
    const want = list.clientHeight + 2 * MORE_MARGIN;
    if (used > 0 && used < want) setShown((n) => Math.max(n, Math.ceil((n * want) / used)));
  }, [near]);
  useEffect(() => {
    const list = end.current?.parentElement;
    if (near || !list || rest === 0 || typeof IntersectionObserver === "undefined") return;
    const io = new IntersectionObserver((entries) => entries.some((e) => e.isIntersecting) && setNear(true), {
      rootMargin: `${NEAR_SCREEN}px`,
    });
    io.observe(list);
    return () => io.disconnect();
  }, [near, rest > 0]);
  useEffect(() => {
    const el = end.current;
    if (!el || !near || rest === 0 || typeof IntersectionObserver === "undefined") return;
    const io = new IntersectionObserver(
      (entries) => {
        if (entries.some((e) => e.isIntersecting)) setShown((n) => n + CHIP_PAGE);
      },
      { root: el.parentElement, rootMargin: `0px 0px ${MORE_MARGIN}px 0px` },
    );
    io.observe(el);
    return () => io.disconnect();
  }, [shown, near, rest > 0]);
  // One listener on the list, not two per chip: a 650-token answer renders and updates much faster.
  const onToggle = (e: MouseEvent | KeyboardEvent) => {
    const i = chipIndex(e);
    if (i !== null) handlers.current.onToggle?.(i, e as MouseEvent);
  };
  const chips: preact.JSX.Element[] = [];
  for (let i = 0; i < p.tokens.length - rest; i++) {
    const v = p.values?.[i];
    const style =
      v !== undefined && v !== null
        ? {
            background: cssColor(cmap, v, p.lo ?? 0, p.hi ?? 1),
            color: textOn(cmap, v, p.lo ?? 0, p.hi ?? 1),
          }
        : undefined;
    const cls = `token${p.selected?.has(i) ? " selected" : ""}${p.marked?.has(i) ? " marked" : ""}${p.onToggle ? " clickable" : ""}`;
    chips.push(
      <span
        key={i}
        class={cls}
        style={style}
        title={p.titles?.[i] ?? `token ${i}`}
        data-index={i}
        role={p.onToggle ? "button" : undefined}
        tabIndex={p.onToggle ? 0 : undefined}
      >
        {tokenLabel(p.tokens[i])}
      </span>,
    );
  }
  const list = (
    // biome-ignore lint/a11y/noStaticElementInteractions: the chips inside are the buttons; the list delegates
    <div
      class="tokens"
      data-testid={p.testId}
      onClick={p.onToggle ? onToggle : undefined}
      onKeyDown={
        p.onToggle
          ? (e) => {
              if ((e.key === "Enter" || e.key === " ") && chipIndex(e) !== null) {
                e.preventDefault();
                onToggle(e);
              }
            }
          : undefined
      }
    >
      {chips}
      {rest > 0 && <span ref={end} class="tokens-end" aria-hidden="true" />}
    </div>
  );
  // Below the list's box, not inside it: scrolling (which renders more chips) never moves it away.
  const showAll = rest > 0 && (
    <button
      type="button"
      class="more-tokens secondary"
      data-export="skip"
      data-testid={p.testId ? `${p.testId}-more` : "more-tokens"}
      title="the list adds its next tokens as it is scrolled; this shows them all"
      onClick={() => setShown(p.tokens.length)}
    >
      show all {p.tokens.length} (+{rest})
    </button>
  );
  return showAll ? (
    <>
      {list}
      {showAll}
    </>
  ) : (
    list
  );
}

/** The caption of a run's figures: its question and answer. */
export function runCaption(run: { prompt: string; answer: string }): Caption {
  return [
    { label: "Q", text: run.prompt },
    { label: "A", text: run.answer },
  ];
}

/** A button that saves an element as PNG. */
export function ExportPng({
  target,
  name,
  caption,
}: {
  target: RefObject<HTMLElement | null>;
  name: string;
  /** Lines above the figure (and text in the file): the question and the answer it explains. */
  caption?: Caption;
}) {
  const [busy, setBusy] = useState(false);
  return (
    <button
      type="button"
      class="secondary"
      data-export="skip"
      data-testid="export-png"
      disabled={busy}
      onClick={async () => {
        if (!target.current) return;
        setBusy(true);
        try {
          download(await elementToPng(target.current, caption), name);
        } finally {
          setBusy(false);
        }
      }}
    >
      Save PNG
    </button>
  );
}

/** A labelled select of 0 … count − 1 (a layer, a head), optionally led by one named choice (e.g. "mean"). */
export function IndexSelect(p: {
  label: string;
  count: number;
  value: string | number;
  onChange: (value: string) => void;
  testId: string;
  first?: { value: string; label: string };
}) {
  return (
    <label>
      {p.label}{" "}
      <select
        value={String(p.value)}
        onChange={(e) => p.onChange((e.target as HTMLSelectElement).value)}
        data-testid={p.testId}
      >
        {p.first && <option value={p.first.value}>{p.first.label}</option>}
        {Array.from({ length: p.count }, (_, i) => (
          <option key={i} value={String(i)}>
            {i}
          </option>
        ))}
      </select>
    </label>
  );
}

export function ErrorBox({ error }: { error: string | null }) {
  if (!error) return null;
  return (
    <div class="error" role="alert" data-testid="error">
      {error}
    </div>
  );
}

export interface JobState {
  jobId: string | null;
  state: "idle" | "queued" | "running" | "done" | "failed" | "cancelled";
  position: number;
  stage: string;
  done: number;
  total: number;
  error: string | null;
}

const IDLE: JobState = { jobId: null, state: "idle", position: 0, stage: "", done: 0, total: 0, error: null };

/** Submits a job and follows its events; `cancel` asks the server to stop it. */
export function useJob(
  handlers: {
    token?: (index: number, text: string, special: boolean) => void;
    done?: (result: Record<string, unknown>) => void;
  } = {},
) {
  const [job, setJob] = useState<JobState>(IDLE);
  const stop = useRef<(() => void) | null>(null);
  const h = useRef(handlers);
  h.current = handlers;
  useEffect(() => () => stop.current?.(), []);
  const start = useCallback(async (submit: () => Promise<{ job: JobInfo }>) => {
    stop.current?.();
    setJob({ ...IDLE, state: "queued" });
    let info: JobInfo;
    try {
      info = (await submit()).job;
    } catch (e) {
      setJob({ ...IDLE, state: "failed", error: errorText(e) });
      return;
    }
    setJob((j) => ({ ...j, jobId: info.id, position: info.position }));
    stop.current = followJob(info.id, {
      state: (d) =>
        setJob((j) => ({ ...j, state: d.state === "running" ? "running" : "queued", position: d.position })),
      progress: (d) =>
        setJob((j) => ({ ...j, state: "running", stage: d.stage, done: d.done, total: d.total })),
      token: (d) => h.current.token?.(d.index, d.text, d.special === true),
      done: (d) => {
        setJob((j) => ({ ...j, state: "done" }));
        h.current.done?.(d);
      },
      error: (d) => setJob((j) => ({ ...j, state: "failed", error: d.message })),
      cancelled: () => setJob((j) => ({ ...j, state: "cancelled" })),
    });
  }, []);
  const cancel = useCallback(async () => {
    if (job.jobId) await api.cancel(job.jobId).catch(() => {});
  }, [job.jobId]);
  const busy = job.state === "queued" || job.state === "running";
  return { job, start, cancel, busy };
}

/**
 * Progress of a job: queue position, stage bar, cancel button, errors. `label` names the work as a noun
 * ("Generation", "Relevancy of run A"); `doneText` is the sentence shown once it has finished.
 */
export function JobProgress({
  job,
  onCancel,
  label = "The job",
  doneText,
}: {
  job: JobState;
  onCancel: () => void;
  label?: string;
  doneText?: string;
}) {
  if (job.state === "idle") return null;
  const pct = job.total > 0 ? Math.round((100 * job.done) / job.total) : 0;
  return (
    <div class={`job job-${job.state}`} data-testid="job" data-state={job.state} data-export="skip">
      {job.state === "queued" && (
        <span>
          {label} is waiting in the queue{job.position > 0 ? ` (position ${job.position})` : ""}…
        </span>
      )}
      {job.state === "running" && (
        <>
          <span>
            {label}: {job.stage || "starting"} {job.total > 0 ? `${job.done}/${job.total}` : ""}
          </span>
          <progress max={100} value={pct} />
        </>
      )}
      {(job.state === "queued" || job.state === "running") && (
        <button type="button" class="secondary" onClick={onCancel} data-testid="cancel">
          Cancel
        </button>
      )}
      {job.state === "cancelled" && <span>{label} cancelled.</span>}
      {job.state === "done" && <span class="muted">{doneText ?? `${label} finished.`}</span>}
      {job.state === "failed" && <ErrorBox error={job.error} />}
    </div>
  );
}

/** A card with a title, tools on the right and content. */
export function Panel({
  title,
  tools,
  children,
  testId,
  panelRef,
}: {
  title: ComponentChildren;
  tools?: ComponentChildren;
  children: ComponentChildren;
  testId?: string;
  panelRef?: RefObject<HTMLElement | null>;
}) {
  return (
    <section class="panel" data-testid={testId} ref={panelRef as RefObject<HTMLElement>}>
      <header>
        <h3>{title}</h3>
        <div class="tools">{tools}</div>
      </header>
      {children}
    </section>
  );
}

/** Min and max of arrays. */
export function extent(arrays: ArrayLike<number | null>[]): [number, number] {
  let lo = Number.POSITIVE_INFINITY;
  let hi = Number.NEGATIVE_INFINITY;
  for (const a of arrays)
    for (let i = 0; i < a.length; i++) {
      const v = a[i];
      if (v === null || !Number.isFinite(v)) continue;
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
  return Number.isFinite(lo) ? [lo, hi] : [0, 1];
}

export { formatValue };

/** Selection helper: click toggles, shift-click selects a range. */
export function useSelection(initial: number[] = []) {
  const [sel, setSel] = useState<Set<number>>(new Set(initial));
  const last = useRef<number | null>(null);
  const toggle = useCallback((i: number, e?: MouseEvent) => {
    setSel((s) => {
      const n = new Set(s);
      if (e?.shiftKey && last.current !== null) {
        const [a, b] = [Math.min(last.current, i), Math.max(last.current, i)];
        for (let k = a; k <= b; k++) n.add(k);
      } else if (n.has(i)) n.delete(i);
      else n.add(i);
      return n;
    });
    last.current = i;
  }, []);
  const sorted = useMemo(() => [...sel].sort((a, b) => a - b), [sel]);
  return { sel, sorted, toggle, set: setSel };
}
