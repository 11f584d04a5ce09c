/** Debian's Chromium as the browser tests and the README screenshots drive it (playwright cannot download one). */
export const CHROMIUM_PATH = "/usr/bin/chromium";

/** Headless, sandbox-free, quiet: no GPU, no network side traffic, no first-run UI. */
export const CHROMIUM_ARGS: readonly string[] = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--disable-quic",
  "--no-first-run",
];
