/**
 * The views of one run, each kept mounted once visited: coming back to a tab shows the DOM and canvases it
 * left (no re-render, no redraw), which is what makes a view switch fast on a long answer. A hidden view is
 * detached from the page (queries, tests and screen readers see only the shown one) and frozen: it gets no
 * new props nor settings until shown again, so it does no work while hidden.
 */
import { type ComponentChildren, createContext, createPortal } from "preact";
import { useCallback, useEffect, useMemo, useRef, useState } from "preact/hooks";
import { whenIdle } from "../idle";
import { memo, SettingsContext, useSettings } from "./common";

/** Whether the view around is the one shown (false while its tab is hidden). */
export const ViewShown = createContext(true);

interface KeptProps {
  active: boolean;
  children: ComponentChildren;
}

function KeptView({ active, children }: KeptProps) {
  // The view renders into its own element, which this component puts into the page or takes out of it.
  const container = useMemo(() => {
    const d = document.createElement("div");
    d.className = "kept-view";
    return d;
  }, []);
  const settings = useSettings();
  const frozen = useRef(settings);
  if (active) frozen.current = settings;
  // Put in or taken out by the host's ref, which preact sets before any layout effect of the commit runs: the
  // view's own layout effects already find it in the page (a token list measures its box before the first
  // paint), and a view hidden is out of the page in the very commit that hides it. A new callback when `active`
  // changes, so it runs again then (and with null on unmount).
  const place = useCallback(
    (host: HTMLDivElement | null) => {
      if (host && active) host.appendChild(container);
      else container.remove();
    },
    [active, container],
  );
  return (
    <div ref={place} class="kept-host">
      {createPortal(
        <ViewShown.Provider value={active}>
          <SettingsContext.Provider value={frozen.current}>{children}</SettingsContext.Provider>
        </ViewShown.Provider>,
        container,
      )}
    </div>
  );
}

/** A hidden view stays as it was: it re-renders only to be hidden or shown. */
const Kept = memo(KeptView, (a, b) => !a.active && !b.active);

/** How long a newly shown view has to itself before views not visited yet are rendered in the background. */
const PRELOAD_DELAY_MS = 400;
/** The pause between two views rendered in the background (each in its own idle period). */
const PRELOAD_GAP_MS = 30;

/**
 * Renders `render(view)` for every view visited so far (`view` shown, the others hidden). The caller keys
 * this by the run, so another run starts afresh.
 *
 * The other views' data is asked for at once (`prefetch`). Once the shown view has had the page to itself for
 * a moment, the views not visited yet are rendered hidden, one per idle period (`render(v, true)`: as a tab
 * click with no selection would show them). Their canvases are drawn then, so opening one of them later is as
 * quick as coming back to it.
 */
export function KeptViews({
  view,
  views,
  render,
  prefetch,
}: {
  view: string;
  /** The views that may be kept (an unknown name is rendered each time, never kept), in preloading order. */
  views: readonly string[];
  render: (view: string, preloading: boolean) => ComponentChildren;
  /** Asks the server for what a view shows when its tab is opened (no rendering). */
  prefetch: (view: string) => void;
}) {
  // What each visited view last rendered: a hidden one keeps it (the shown view's route is not its own).
  const kept = useRef(new Map<string, ComponentChildren>());
  const known = views.includes(view);
  if (known) kept.current.set(view, render(view, false));
  const latest = useRef(render);
  latest.current = render;
  const [, preloaded] = useState(0);
  // When the shown view was shown: it has the page to itself for a moment (its own data and drawing first).
  const shownAt = useRef({ view, at: performance.now() });
  if (shownAt.current.view !== view) shownAt.current = { view, at: performance.now() };
  // Once the first view is in the page, the others' data is asked for: the server works while the reader
  // reads, and the page only parses the answers, so a tab clicked before its view is rendered ahead has
  // only the rendering left to do. Once per run: the caller keys this component by the run.
  useEffect(() => {
    for (const v of views) if (v !== view) prefetch(v);
  }, []);
  // After every commit: the next view not rendered yet, in an idle period.
  useEffect(() => {
    const next = views.find((v) => !kept.current.has(v));
    if (!next) return;
    const delay = Math.max(PRELOAD_GAP_MS, shownAt.current.at + PRELOAD_DELAY_MS - performance.now());
    return whenIdle(() => {
      if (kept.current.has(next)) return;
      kept.current.set(next, latest.current(next, true));
      preloaded((n) => n + 1);
    }, delay);
  });
  return (
    <>
      {[...kept.current].map(([v, children]) => (
        <Kept key={v} active={v === view}>
          {children}
        </Kept>
      ))}
      {!known && render(view, false)}
    </>
  );
}
