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
