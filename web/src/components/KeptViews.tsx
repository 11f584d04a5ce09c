/**
 * The views of one run, each kept mounted once visited: coming back to a tab shows the DOM and canvases it
 * left (no re-render, no redraw), which is what makes a view switch fast on a long answer. A hidden view is
 * detached from the page (queries, tests and screen readers see only the shown one) and frozen: it gets no
 * new props nor settings until shown again, so it does no work while hidden.
 */
import { type ComponentChildren, createContext, createPortal } from "preact";
import { useLayoutEffect, useMemo, useRef } from "preact/hooks";
import { memo, SettingsContext, useSettings } from "./common";

/** Whether the view around is the one shown (false while its tab is hidden). */
export const ViewShown = createContext(true);

interface KeptProps {
  active: boolean;
  children: ComponentChildren;
}

function KeptView({ active, children }: KeptProps) {
  const host = useRef<HTMLDivElement>(null);
  // The view renders into its own element, which this component puts into the page or takes out of it.
  const container = useMemo(() => {
    const d = document.createElement("div");
    d.className = "kept-view";
    return d;
  }, []);
  const settings = useSettings();
  const frozen = useRef(settings);
  if (active) frozen.current = settings;
  useLayoutEffect(() => {
    if (active) host.current?.appendChild(container);
    else container.remove();
  }, [active, container]);
  useLayoutEffect(() => () => container.remove(), [container]);
  return (
    <div ref={host} class="kept-host">
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

/**
 * Renders `render(view)` for every view visited so far (`view` shown, the others hidden). The caller keys
 * this by the run, so another run starts afresh.
 */
export function KeptViews({
  view,
  views,
  render,
}: {
  view: string;
  /** The views that may be kept (an unknown name is rendered each time, never kept). */
  views: readonly string[];
  render: (view: string) => ComponentChildren;
}) {
  // What each visited view last rendered: a hidden one keeps it (the shown view's route is not its own).
  const kept = useRef(new Map<string, ComponentChildren>());
  const known = views.includes(view);
  if (known) kept.current.set(view, render(view));
  return (
    <>
      {[...kept.current].map(([v, children]) => (
        <Kept key={v} active={v === view}>
          {children}
        </Kept>
      ))}
      {!known && render(view)}
    </>
  );
}
