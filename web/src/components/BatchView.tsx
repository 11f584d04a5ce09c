/**
 * The batch report of the served runs folder (#/batch): every item with its answer, correctness, reliance and
 * pair result; filters for wrong answers, low image share and failed pairs; each item opens its run, or its
 * pair side by side in the compare view. The numbers are the report's (GET /api/batch).
 */
import { useState } from "preact/hooks";
import { api, type BatchItem } from "../api";
import { ErrorBox, Panel, useAsync } from "./common";

const pct = (v: number | null) => (v === null ? "–" : `${(100 * v).toFixed(0)}%`);

export function BatchView() {
  const batch = useAsync(() => api.batch(), []);
  const [wrong, setWrong] = useState(false);
  const [failedPairs, setFailedPairs] = useState(false);
  const [lowShare, setLowShare] = useState<number | null>(null);
  const keep = (it: BatchItem) =>
    (!wrong || it.correct === false) &&
    (!failedPairs || it.pair_result === "one" || it.pair_result === "none") &&
    (lowShare === null || (it.image_share !== null && it.image_share < lowShare));
  const b = batch.data;
  const shown = b ? b.items.filter(keep) : [];
  return (
    <div class="view" data-testid="batch-view">
      <Panel title={b ? `Batch ${b.name}${b.complete ? "" : " (in progress)"}` : "Batch report"}>
        <ErrorBox error={batch.error} />
        {b && (
          <>
            <p class="muted" data-testid="batch-summary">
              {b.items.length} items · accuracy {pct(b.accuracy)}
              {b.pairs
                ? ` · pairs: ${b.pairs.both} both right, ${b.pairs.one} one, ${b.pairs.none} none of ${b.pairs.n}`
                : ""}
            </p>
            <div class="controls">
              <label>
                <input
                  type="checkbox"
                  checked={wrong}
                  onChange={(e) => setWrong((e.target as HTMLInputElement).checked)}
                  data-testid="batch-wrong"
                />{" "}
                wrong answers
              </label>
              <label>
                <input
                  type="checkbox"
                  checked={failedPairs}
                  onChange={(e) => setFailedPairs((e.target as HTMLInputElement).checked)}
                  data-testid="batch-failed-pairs"
                />{" "}
                failed pairs
              </label>
              <label>
                <input
                  type="checkbox"
                  checked={lowShare !== null}
                  onChange={(e) => setLowShare((e.target as HTMLInputElement).checked ? 0.5 : null)}
                  data-testid="batch-low"
                />{" "}
                image share below{" "}
                <input
                  type="number"
                  min={0}
                  max={1}
                  step={0.05}
                  value={lowShare ?? 0.5}
                  disabled={lowShare === null}
                  onInput={(e) => setLowShare(Number((e.target as HTMLInputElement).value))}
                  data-testid="batch-low-value"
                />
              </label>
              <span class="muted" data-testid="batch-count">
                {shown.length} shown
              </span>
            </div>
            {/* A wide table scrolls inside its own box on a narrow screen, not the whole page. */}
            {/* biome-ignore lint/a11y/noNoninteractiveTabindex: a scrollable region must be reachable by keyboard */}
            <section class="batch-scroll" aria-label="batch items" tabIndex={0}>
              <table class="batch-table" data-testid="batch-items">
                <thead>
                  <tr>
                    <th>item</th>
                    <th>question</th>
                    <th>answer</th>
                    <th>expected</th>
                    <th>right</th>
                    <th>image share</th>
                    <th>pair</th>
                    <th>open</th>
                  </tr>
                </thead>
                <tbody>
                  {shown.map((it) => (
                    <tr key={it.id} data-item={it.id} class={it.correct === false ? "wrong" : ""}>
                      <td>{it.id}</td>
                      <td>
                        <bdi>{it.question}</bdi>
                      </td>
                      <td>
                        <bdi>{it.error ? `failed: ${it.error}` : (it.answer ?? "–")}</bdi>
                      </td>
                      <td>
                        <bdi>{it.expected ?? "–"}</bdi>
                      </td>
                      <td>{it.correct === null ? "–" : it.correct ? "✓" : "✗"}</td>
                      <td>{pct(it.image_share)}</td>
                      <td>{it.pair ? `${it.pair}${it.pair_result ? ` (${it.pair_result})` : ""}` : "–"}</td>
                      <td class="links">
                        {it.run_id ? (
                          <a
                            href={`#/run/${encodeURIComponent(it.run_id)}/relevancy`}
                            data-testid="batch-open"
                          >
                            run
                          </a>
                        ) : (
                          <span class="muted" title="this item's run is not in the data folder">
                            no run
                          </span>
                        )}
                        {it.run_id && it.pair_run_id && (
                          <a
                            href={`#/compare/${encodeURIComponent(it.run_id)}/${encodeURIComponent(it.pair_run_id)}`}
                            data-testid="batch-compare"
                          >
                            compare pair
                          </a>
                        )}
                      </td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </section>
          </>
        )}
      </Panel>
    </div>
  );
}
