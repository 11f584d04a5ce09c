/** Command-line flags of the benchmark scripts (`--name value`). */

export function flag(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

/** A non-negative integer flag, or `fallback` when absent. */
export function count(name: string, fallback: number): number {
  const raw = flag(name);
  if (raw === undefined) return fallback;
  const v = Number(raw);
  if (!Number.isSafeInteger(v) || v < 0)
    throw new Error(`${name} must be a non-negative integer, got "${raw}"`);
  return v;
}
