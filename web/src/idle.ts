/**
 * Runs `f` once the page is idle (after `delay` ms, then the browser's next idle period); returns a canceller.
 * A browser without requestIdleCallback waits the delay only.
 */
export function whenIdle(f: () => void, delay = 0): () => void {
  let idle: number | null = null;
  const timer = setTimeout(() => {
    if (typeof requestIdleCallback === "function") idle = requestIdleCallback(f, { timeout: 2000 });
    else f();
  }, delay);
  return () => {
    clearTimeout(timer);
    if (idle !== null) cancelIdleCallback(idle);
  };
}

/** Work waiting for the next idle period on behalf of `nowIfOnScreen` (one timer for all of it). */
const queued = new Set<() => void>();
let scheduled = false;

/** Runs `f` with the other queued work in the browser's next idle period; returns a canceller. */
function queueIdle(f: () => void): () => void {
  queued.add(f);
  if (!scheduled) {
    scheduled = true;
    whenIdle(() => {
      scheduled = false;
      const batch = [...queued];
      queued.clear();
      for (const g of batch) g();
    });
  }
  return () => {
    queued.delete(f);
  };
}

/**
 * Runs `f` at once when `el` is in the page and on the screen, else in the browser's next idle period (what
 * cannot be seen yet does not hold up a paint); returns a canceller. A view has dozens of maps below the
 * screen: they share one timer and are drawn in one idle period.
 */
export function nowIfOnScreen(el: Element, f: () => void): () => void {
  const r = el.getBoundingClientRect();
  if (el.isConnected && r.top < innerHeight && r.bottom > 0) {
    f();
    return () => {};
  }
  return queueIdle(f);
}
