/**
 * Answers of the server kept for the page's life, by key: switching between a run's views shows what was
 * fetched before at once instead of asking again. Keys name everything an answer depends on (the run, its
 * computed tokens, the parameters), so a changed run gets new keys. Failures are not kept.
 */

const MAX_ENTRIES = 200;

interface Entry {
  promise: Promise<unknown>;
  /** Set once the promise has resolved: what a render can show without waiting. */
  value?: { data: unknown };
}

const entries = new Map<string, Entry>();

/** The answer for `key`, loading it once (later calls share the same promise). */
export function cached<T>(key: string, load: () => Promise<T>): Promise<T> {
  const hit = entries.get(key);
  if (hit) {
    // Most recently used last: the oldest entries go first when the cache is full.
    entries.delete(key);
    entries.set(key, hit);
    return hit.promise as Promise<T>;
  }
  const entry: Entry = { promise: Promise.resolve() };
  entry.promise = load().then(
    (data) => {
      entry.value = { data };
      return data;
    },
    (e) => {
      if (entries.get(key) === entry) entries.delete(key);
      throw e;
    },
  );
  entries.set(key, entry);
  while (entries.size > MAX_ENTRIES) entries.delete(entries.keys().next().value as string);
  return entry.promise as Promise<T>;
}

/** The resolved answer for `key`, if there is one already. */
export function peek<T>(key: string): { data: T } | undefined {
  return entries.get(key)?.value as { data: T } | undefined;
}

/** Drops every answer whose key starts with `prefix` (a run's analyses after a new computation). */
export function forget(prefix: string): void {
  for (const key of [...entries.keys()]) if (key.startsWith(prefix)) entries.delete(key);
}

/** One answer of the server: the key it is kept under and how to ask for it. */
export interface Query<T> {
  key: string;
  load: () => Promise<T>;
}

/**
 * Asks for `q` now, ahead of the view that will show it (its answer is kept as {@link cached} keeps it); a
 * failure is left for that view to report when it asks itself.
 */
export function prefetch<T>(q: Query<T>): void {
  cached(q.key, q.load).catch(() => {});
}
