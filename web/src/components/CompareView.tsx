/**
 * Two runs side by side (#/compare/<idA>/<idB>): one answer token selected in both (by position; a click on
 * either side moves both), each run's LLM relevancy map on its own original picture, their difference when
 * the runs share the picture and its image-token layout (otherwise the server's reason), and how each
 * token's relevancy splits between the image and the question. All numbers come from GET /api/compare.
 */
import { useRef, useState } from "preact/hooks";
import { api, type CompareSide, type RelevancyMode, type RunDetail } from "../api";
import {
  Colorbar,
  ErrorBox,
  ExportPng,
  ImageMap,
  JobProgress,
  Panel,
  TokenChips,
  useAsync,
  useJob,
  useRunImage,
} from "./common";

const MAP_SIZE = 300;

/** "Same picture, two questions" and the like: what the pair varies. */
function relation(a: RunDetail, b: RunDetail, sameImage: boolean | null): string {
  const q = a.prompt === b.prompt;
  if (sameImage === null) return q ? "Same question" : "Two questions";
  if (sameImage && q) return "Same picture, same question";
  if (sameImage) return "Same picture, two questions";
  if (q) return "Same question, two pictures";
  return "Two pictures, two questions";
}

/** A run's answer with the shared token selection, and an offer to compute relevancy when it is missing. */
function SideHeader({
  label,
  run,
  token,
  limit,
  mode,
  onToken,
  onComputed,
}: {
  label: "A" | "B";
  run: RunDetail;
  token: number;
  /** Tokens past the shorter answer cannot be compared. */
  limit: number;
  mode: RelevancyMode;
  onToken: (t: number) => void;
  onComputed: () => void;
}) {
  const { job, start, cancel, busy } = useJob({ done: onComputed });
  const computed = run.analyses.relevancy[mode]?.llm ?? [];
  const side = label.toLowerCase();
  return (
    <div class="compare-side" data-testid={`cmp-side-${side}`}>
      <div class="qa">
        <div>
          <strong>{label}</strong>{" "}
          <a href={`#/run/${run.id}/relevancy`} class="muted small">
            open run
          </a>
        </div>
        <div>
          <span class="muted">Q</span> <bdi data-testid={`cmp-prompt-${side}`}>{run.prompt}</bdi>
        </div>
        <div>
          <span class="muted">A</span> <bdi>{run.answer || "∅"}</bdi>
        </div>
      </div>
      <TokenChips
        tokens={run.tokens}
        selected={new Set([token])}
        marked={new Set(computed)}
        onToggle={(i) => i < limit && onToken(i)}
        titles={run.tokens.map((_, i) =>
          i < limit ? `token ${i}` : `token ${i}: the other answer has only ${limit} tokens`,
        )}
        testId={`cmp-tokens-${side}`}
      />
      {!computed.includes(token) && (
        <div class="not-computed" data-testid={`cmp-missing-${side}`}>
          <span class="muted">
            LLM relevancy ({mode}) of token {token} is not computed for run {label}.
          </span>{" "}
          <button
            type="button"
            disabled={busy}
            onClick={() => start(() => api.computeRelevancy(run.id, mode, "llm", "all"))}
            data-testid={`cmp-compute-${side}`}
          >
            Compute relevancy for run {label}
          </button>
        </div>
      )}
      {/* Once done, the maps below show it (a "done" line would only push this side's map down). */}
      {job.state !== "done" && (
        <JobProgress
          job={job}
          onCancel={cancel}
          label={`Relevancy of run ${label}`}
          doneText={`Relevancy of run ${label} computed.`}
        />
      )}
    </div>
  );
}

/** The image-vs-question split of one side's token as a stacked bar (shares from the server). */
function RelianceBar({ label, side }: { label: string; side: CompareSide }) {
  const img = side.share.imageShare;
  return (
    <div
      class="reliance-row"
      data-testid={`cmp-reliance-${label.toLowerCase()}`}
      data-image-share={img}
      data-reliance={side.reliance}
    >
      <span class="reliance-label">
        {label} · “{side.tokenText}”
      </span>
      <div
        class="reliance-bar"
        title={`image ${(100 * img).toFixed(1)}% · question ${(100 * (1 - img)).toFixed(1)}%`}
      >
        <div class="reliance-image" style={{ width: `${100 * img}%` }} />
        <div class="reliance-question" style={{ width: `${100 * (1 - img)}%` }} />
      </div>
      <span class="small">
        image {(100 * img).toFixed(0)}% · question {(100 * (1 - img)).toFixed(0)}% · LVLM-Interpret reliance{" "}
        {side.reliance.toFixed(2)}
      </span>
    </div>
  );
}

export function CompareView({ a, b }: { a: string; b: string }) {
  const root = useRef<HTMLDivElement>(null);
  const [mode, setMode] = useState<RelevancyMode>("exact");
  const [token, setToken] = useState(0);
  const [versions, setVersions] = useState({ a: 0, b: 0 });
  const runA = useAsync(() => api.run(a), [a, versions.a]);
  const runB = useAsync(() => api.run(b), [b, versions.b]);
  const imageA = useRunImage(a);
  const imageB = useRunImage(b);
  const A = runA.data?.id === a ? runA.data : null;
  const B = runB.data?.id === b ? runB.data : null;
  const ready =
    A !== null &&
    B !== null &&
    token < Math.min(A.tokens.length, B.tokens.length) &&
    (A.analyses.relevancy[mode]?.llm ?? []).includes(token) &&
    (B.analyses.relevancy[mode]?.llm ?? []).includes(token);
  const view = useAsync(
    () => (ready ? api.compare(a, b, mode, token) : Promise.resolve(null)),
    [a, b, mode, token, ready],
  );
  // Only the answer for what is selected now (a slower older answer never shows under a newer selection).
  const v =
    view.data &&
    view.data.a.id === a &&
    view.data.b.id === b &&
    view.data.token === token &&
    view.data.mode === mode
      ? view.data
      : null;
  const hi = v ? Math.max(v.a.max, v.b.max) : 1;

  return (
    <div ref={root} class="view" data-testid="compare-view">
      <Panel
        title={A && B ? `Compare: ${relation(A, B, v ? v.sameImage : null)}` : "Compare two runs"}
        tools={
          <ExportPng
            target={root}
            name={`compare-${a}-${b}-token${token}.png`}
            caption={
              A && B
                ? [
                    { label: "A: Q", text: A.prompt },
                    { label: "A: A", text: A.answer },
                    { label: "B: Q", text: B.prompt },
                    { label: "B: A", text: B.answer },
                  ]
                : []
            }
          />
        }
      >
        <ErrorBox error={runA.error ? `run A: ${runA.error}` : null} />
        <ErrorBox error={runB.error ? `run B: ${runB.error}` : null} />
        <div class="controls" data-export="skip">
          <label>
            relevancy{" "}
            <select
              value={mode}
              onChange={(e) => setMode((e.target as HTMLSelectElement).value as RelevancyMode)}
              data-testid="cmp-mode"
            >
              <option value="exact">exact</option>
              <option value="incremental">incremental (LVLM-Interpret)</option>
            </select>
          </label>
          <a href={`#/compare/${encodeURIComponent(b)}/${encodeURIComponent(a)}`} data-testid="cmp-swap">
            swap sides
          </a>
        </div>
        {(!A || !B) && !runA.error && !runB.error && <p class="muted">Loading runs…</p>}
        {A && B && (
          <div class="compare-grid">
            {(
              [
                ["A", A, imageA, v?.a],
                ["B", B, imageB, v?.b],
              ] as const
            ).map(([label, run, image, side]) => (
              <div key={label} class="figure">
                <SideHeader
                  label={label}
                  run={run}
                  token={token}
                  limit={Math.min(A.tokens.length, B.tokens.length)}
                  mode={mode}
                  onToken={setToken}
                  onComputed={() =>
                    setVersions((x) => (label === "A" ? { ...x, a: x.a + 1 } : { ...x, b: x.b + 1 }))
                  }
                />
                <ImageMap
                  image={image}
                  map={side?.map ?? null}
                  geometry={run.image}
                  size={MAP_SIZE}
                  lo={0}
                  hi={hi}
                  testId={`cmp-map-${label.toLowerCase()}`}
                  title={
                    side
                      ? `run ${label}, token “${side.tokenText}”: share of its image relevancy per patch`
                      : undefined
                  }
                />
              </div>
            ))}
          </div>
        )}
        {v && (
          <div class="figure">
            <Colorbar lo={0} hi={hi} width={240} label="share of the token's image relevancy (both maps)" />
          </div>
        )}
        <ErrorBox error={view.error} />
      </Panel>
      {v && (
        <Panel title={`Difference A − B, token ${token}`} testId="cmp-difference">
          {v.difference && A ? (
            <div class="figure">
              <ImageMap
                image={imageA}
                map={v.difference.map}
                geometry={A.image}
                size={MAP_SIZE}
                lo={-v.difference.absMax}
                hi={v.difference.absMax}
                cmap="coolwarm"
                testId="cmp-diff"
              />
              <Colorbar
                lo={-v.difference.absMax}
                hi={v.difference.absMax}
                width={240}
                cmap="coolwarm"
                label="red: more of A's image relevancy, blue: more of B's"
              />
            </div>
          ) : (
            <p class="muted" data-testid="cmp-no-diff">
              No difference map: {v.differenceReason}.
            </p>
          )}
        </Panel>
      )}
      {v && (
        <Panel title="Reliance: image vs question" testId="cmp-reliance">
          <p class="muted small">
            Share of the token's relevancy on the image tokens vs the question text after the image; the
            LVLM-Interpret reliance is the fraction of the top-3 question words the image maximum beats.
          </p>
          <RelianceBar label="A" side={v.a} />
          <RelianceBar label="B" side={v.b} />
        </Panel>
      )}
    </div>
  );
}
