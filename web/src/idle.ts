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

/**
 * Runs `f` at once when `el` is in the page and on the screen, else in the browser's next idle period (what
 * cannot be seen yet does not hold up a paint); returns a canceller.
 */
export function nowIfOnScreen(el: Element, f: () => void): () => void {
  const r = el.getBoundingClientRect();
  if (el.isConnected && r.top < innerHeight && r.bottom > 0) {
    f();
    return () => {};
  }
  return whenIdle(f);
}
