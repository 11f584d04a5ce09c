/** The app shell: header, sidebar of saved runs (with import), hash routes to the views. */

import { useCallback, useEffect, useRef, useState } from "preact/hooks";
import { mapLayerGrids } from "../../../src/interpret/views/map-layers";
import { api, type JobInfo, type RunDetail, type RunSummary, type ServerConfig } from "../api";
import { MapsView, prefetchMaps, prefetchSummary, SummaryView } from "./AttentionViews";
import { BatchView } from "./BatchView";
import { CausalView, prefetchCausal } from "./CausalView";
import { CompareView } from "./CompareView";
import {
  DEFAULT_SETTINGS,
  ErrorBox,
  errorText,
  SettingsBar,
  SettingsContext,
  type ViewSettings,
} from "./common";
import { FaithfulnessView, prefetchFaithfulness } from "./FaithfulnessView";
import { GenerateView } from "./GenerateView";
import { KeptViews } from "./KeptViews";
import { prefetchRelevancy, RelevancyView } from "./RelevancyView";

/** The selection of a view opened by its tab: none. */
const NO_PARAMS = new URLSearchParams();

const VIEWS = [
  { id: "summary", label: "Attention summary" },
  { id: "maps", label: "Attention maps" },
  { id: "relevancy", label: "Relevancy" },
  { id: "causal", label: "Causality" },
  { id: "faithfulness", label: "Faithfulness" },
] as const;

/** Asks for what a view shows when its tab is opened. */
function prefetchView(view: string, run: RunDetail): void {
  if (view === "summary") prefetchSummary(run);
  else if (view === "maps") prefetchMaps(run);
  else if (view === "relevancy") prefetchRelevancy(run);
  else if (view === "causal") prefetchCausal(run);
  else if (view === "faithfulness") prefetchFaithfulness(run);
}

interface Route {
  page: "generate" | "run" | "compare" | "batch";
  /** The page's path ("/run/<id>/maps"), without the query of what is selected on it. */
  path: string;
  runId?: string;
  /** The two runs of the compare page. */
  compare?: [string, string];
  view?: string;
  params: URLSearchParams;
}

function parseHash(hash: string): Route {
  const [path, query = ""] = hash.replace(/^#/, "").split("?");
  const parts = path.split("/").filter(Boolean);
  const params = new URLSearchParams(query);
  if (parts[0] === "batch") return { page: "batch", path, params };
  if (parts[0] === "compare" && parts[1] && parts[2])
    return {
      page: "compare",
      path,
      compare: [decodeURIComponent(parts[1]), decodeURIComponent(parts[2])],
      params,
    };
  if (parts[0] === "run" && parts[1])
    return { page: "run", path, runId: decodeURIComponent(parts[1]), view: parts[2] ?? "summary", params };
  return { page: "generate", path, params };
}

function useRoute(): [Route, (h: string) => void] {
  const [route, setRoute] = useState(() => parseHash(location.hash));
  useEffect(() => {
    const on = () => setRoute(parseHash(location.hash));
    addEventListener("hashchange", on);
    return () => removeEventListener("hashchange", on);
  }, []);
  return [route, (h: string) => (location.hash = h)];
}

/** A job's request in a few words (for the interrupted jobs list). */
function requestSummary(j: JobInfo): string {
  const r = j.request;
  if (j.kind === "generate") {
    const image = r.image as { name?: string } | undefined;
    return `image ${image?.name ?? "?"} · ${r.max_new_tokens ?? "?"} new tokens · mode ${r.image_mode ?? "default"}`;
  }
  if (j.kind === "relevancy")
    return `${r.mode ?? "exact"} ${r.kind ?? "llm"} · tokens ${Array.isArray(r.tokens) ? r.tokens.join(",") : (r.tokens ?? "all")}`;
  if (j.kind === "faithfulness") return `map ${r.map ?? "?"} · token ${r.token ?? "?"}`;
  return `token ${r.token ?? "?"}${r.layer !== undefined ? ` · layer ${r.layer}` : ""}`;
}

const jobTitle = (j: JobInfo) => (j.kind === "generate" ? String(j.request.prompt ?? j.label) : j.label);

/** Jobs a previous server never finished (killed, crashed or stopped): what was asked, until dismissed. */
function InterruptedJobs({ jobs, onDismissed }: { jobs: JobInfo[]; onDismissed: () => void }) {
  const [error, setError] = useState<string | null>(null);
  if (jobs.length === 0) return null;
  return (
    <div data-testid="interrupted-jobs">
      <h4>Interrupted jobs ({jobs.length})</h4>
      <ErrorBox error={error} />
      <ul class="runs interrupted">
        {jobs.map((j) => (
          <li key={j.id} data-job={j.id}>
            <div class="job-item">
              <span class="prompt" title={jobTitle(j)}>
                {j.kind}: <bdi>{jobTitle(j)}</bdi>
              </span>
              <span class="meta">{requestSummary(j)}</span>
              {j.runId && j.kind !== "generate" && (
                <a class="meta" href={`#/run/${j.runId}/${j.kind}`}>
                  open the run
                </a>
              )}
              <span class="meta">{j.error}</span>
            </div>
            <button
              type="button"
              class="delete"
              title="dismiss"
              data-testid="dismiss-job"
              onClick={async () => {
                try {
                  await api.dismissJob(j.id);
                  onDismissed();
                } catch (err) {
                  setError(errorText(err));
                }
              }}
            >
              ×
            </button>
          </li>
        ))}
      </ul>
    </div>
  );
}

function Sidebar({
  page,
  open,
  runs,
  interrupted,
  current,
  picked,
  onPick,
  hasBatch,
  onImported,
  onDeleted,
  onJobDismissed,
}: {
  /** The page shown (its hash): the sidebar's errors belong to the page they happened on. */
  page: string;
  /** On a narrow screen the sidebar is a panel the header's "Runs" button opens (always shown when wide). */
  open: boolean;
  runs: RunSummary[];
  interrupted: JobInfo[];
  current?: string;
  /** Runs ticked for the compare view (at most two, in the order ticked). */
  picked: string[];
  onPick: (id: string, on: boolean) => void;
  /** The data folder is a batch's runs folder: link its report. */
  hasBatch: boolean;
  onImported: (id: string) => void;
  onDeleted: (id: string) => void;
  onJobDismissed: () => void;
}) {
  const [error, setError] = useState<string | null>(null);
  const [importing, setImporting] = useState(false);
  // A failed import or delete is told where it happened; moving to another page clears it.
  // biome-ignore lint/correctness/useExhaustiveDependencies: the page is the trigger, not an input
  useEffect(() => setError(null), [page]);
  return (
    <aside id="sidebar" class={`sidebar${open ? " open" : ""}`} data-testid="sidebar">
      <a class="button new-run" href="#/generate" data-testid="new-question">
        + New question
      </a>
      <label class="file-button secondary" data-testid="import-label">
        {importing ? "Importing…" : "Import run…"}
        <input
          type="file"
          accept=".gz,.tgz,application/gzip"
          data-testid="import-input"
          disabled={importing}
          onChange={async (e) => {
            const input = e.target as HTMLInputElement;
            const f = input.files?.[0];
            input.value = "";
            if (!f) return;
            setImporting(true);
            setError(null);
            try {
              const { run } = await api.importArchive(f, f.name);
              onImported(run.id);
            } catch (err) {
              setError(`${f.name}: ${errorText(err)}`);
            } finally {
              setImporting(false);
            }
          }}
        />
      </label>
      {hasBatch && (
        <a class="button secondary" href="#/batch" data-testid="open-batch">
          Batch report
        </a>
      )}
      <ErrorBox error={error} />
      <InterruptedJobs jobs={interrupted} onDismissed={onJobDismissed} />
      <h4>Runs ({runs.length})</h4>
      <div class="compare-bar">
        <a
          class={`button secondary${picked.length === 2 ? "" : " disabled"}`}
          href={picked.length === 2 ? `#/compare/${picked.map(encodeURIComponent).join("/")}` : undefined}
          aria-disabled={picked.length !== 2}
          data-testid="compare-selected"
        >
          Compare ({picked.length}/2)
        </a>
        <span class="muted small">tick two runs</span>
      </div>
      <ul class="runs" data-testid="run-list">
        {runs.map((r) => (
          <li key={r.id} class={r.id === current ? "current" : ""} data-run={r.id}>
            <input
              type="checkbox"
              class="pick"
              title="select for comparison"
              aria-label={`select run ${r.id} for comparison`}
              checked={picked.includes(r.id)}
              onChange={(e) => onPick(r.id, (e.target as HTMLInputElement).checked)}
              data-testid="pick-run"
            />
            <a href={`#/run/${r.id}/summary`}>
              {/* Isolated: bidi controls in a question or answer cannot reorder the text around it. */}
              <bdi class="prompt">{r.prompt}</bdi>
              <bdi class="answer">{r.answer || "∅"}</bdi>
              <span class="meta">
                {r.source !== "generated" && (
                  <span class={`badge ${r.source}`} data-testid="run-source">
                    {r.source}
                  </span>
                )}
                <span class="when">
                  {new Date(r.created_at).toLocaleString()} · {r.n_tokens} tok
                </span>
              </span>
              {r.source === "imported" && (
                <span class="meta" data-testid="import-origin">
                  {r.origin ? (
                    <>
                      from <bdi>{r.origin}</bdi>
                    </>
                  ) : (
                    "imported"
                  )}
                  {r.indexed_at ? ` · ${new Date(r.indexed_at).toLocaleString()}` : ""}
                </span>
              )}
            </a>
            <button
              type="button"
              class="delete"
              title="delete run"
              onClick={async () => {
                if (!confirm(`Delete run ${r.id}?`)) return;
                try {
                  await api.deleteRun(r.id);
                  onDeleted(r.id);
                } catch (err) {
                  setError(errorText(err));
                }
              }}
            >
              ×
            </button>
          </li>
        ))}
      </ul>
    </aside>
  );
}

/** "8×8 patches", or each grid's shape and the token count for a layout of several parts. */
function imageSummary(run: RunDetail): string {
  const g = run.image.grids;
  const n = run.image.boxes.length;
  if (g.length === 1 && g[0].rows * g[0].cols === n) return `${g[0].rows}×${g[0].cols} patches`;
  return `${n} tokens (${g.map((x) => `${x.name} ${x.rows}×${x.cols}`).join(", ")})`;
}

function RunHeader({ run, view }: { run: RunDetail; view: string }) {
  return (
    <div class="run-header" data-testid="run-header">
      <div class="qa">
        <div>
          <span class="muted">Q</span> <bdi data-testid="run-prompt">{run.prompt}</bdi>
        </div>
        <div>
          <span class="muted">A</span> <bdi data-testid="run-answer">{run.answer || "∅"}</bdi>
        </div>
        {run.warnings.map((w) => (
          <div key={w} class="warning" role="note" data-testid="run-warning">
            {w}
          </div>
        ))}
        <div class="muted small">
          {run.model.dir} · {run.layout.layers} layers × {run.layout.heads} heads · {run.layout.G} answer
          tokens · sequence {run.layout.S} · image {imageSummary(run)} · mode {run.settings.image_mode} · T=
          {run.settings.temperature}
        </div>
      </div>
      <nav class="tabs">
        {VIEWS.map((v) => (
          <a
            key={v.id}
            class={`tab${view === v.id ? " active" : ""}`}
            href={`#/run/${run.id}/${v.id}`}
            data-testid={`tab-${v.id}`}
          >
            {v.label}
          </a>
        ))}
        <a class="button secondary" href={api.exportUrl(run.id)} download data-testid="export-run">
          Export run (.tar.gz)
        </a>
      </nav>
    </div>
  );
}

export function App() {
  const [route, navigate] = useRoute();
  const [config, setConfig] = useState<ServerConfig | null>(null);
  const [runs, setRuns] = useState<RunSummary[]>([]);
  const [interrupted, setInterrupted] = useState<JobInfo[]>([]);
  const [run, setRun] = useState<RunDetail | null>(null);
  const [runError, setRunError] = useState<string | null>(null);
  const [picked, setPicked] = useState<string[]>([]);
  const [hasBatch, setHasBatch] = useState(false);
  // The page the sidebar was opened on: a page chosen from it replaces it (on a narrow screen it covers the
  // page), in the very render that shows the new page (an effect would leave it open for a frame).
  const [sidebarOpenOn, setSidebarOpenOn] = useState<string | null>(null);
  const sidebarOpen = sidebarOpenOn === route.path;
  // Ticking a third run drops the oldest tick: the compare view takes two.
  const onPick = useCallback(
    (id: string, on: boolean) =>
      setPicked((p) => (on ? [...p.filter((x) => x !== id), id].slice(-2) : p.filter((x) => x !== id))),
    [],
  );
  const [settings, setSettings] = useState<ViewSettings>(() => {
    try {
      return { ...DEFAULT_SETTINGS, ...JSON.parse(localStorage.getItem("lvlm-view-settings") ?? "{}") };
    } catch {
      return DEFAULT_SETTINGS;
    }
  });
  const set = useCallback((s: Partial<ViewSettings>) => {
    setSettings((old) => {
      const n = { ...old, ...s };
      localStorage.setItem("lvlm-view-settings", JSON.stringify(n));
      return n;
    });
  }, []);
  const refreshRuns = useCallback(
    () =>
      api.runs().then(
        (r) => setRuns(r.runs),
        () => {},
      ),
    [],
  );
  const refreshInterrupted = useCallback(
    () =>
      api.jobs().then(
        (r) => setInterrupted(r.jobs.filter((j) => j.state === "interrupted")),
        () => {},
      ),
    [],
  );
  useEffect(() => {
    api.config().then(setConfig, () => {});
    api.batch().then(
      () => setHasBatch(true),
      () => setHasBatch(false),
    );
    void refreshRuns();
    void refreshInterrupted();
  }, [refreshRuns, refreshInterrupted]);
  const loadRun = useCallback((id: string) => {
    api.run(id).then(
      (r) => {
        setRun(r);
        setRunError(null);
      },
      (e) => {
        setRun(null);
        setRunError(errorText(e));
      },
    );
  }, []);
  // A run opened by link that the sidebar does not list yet (made elsewhere): refresh the list.
  const refreshedFor = useRef<string | null>(null);
  useEffect(() => {
    if (!route.runId || refreshedFor.current === route.runId || runs.some((r) => r.id === route.runId))
      return;
    refreshedFor.current = route.runId;
    void refreshRuns();
  }, [route.runId, runs, refreshRuns]);
  useEffect(() => {
    if (route.page === "run" && route.runId && route.runId !== run?.id) {
      setRun(null);
      loadRun(route.runId);
    }
  }, [route.page, route.runId, run?.id, loadRun]);

  const current = route.page === "run" && run && run.id === route.runId ? run : null;
  return (
    <SettingsContext.Provider value={{ settings, set }}>
      <div class="app">
        <header class="top">
          <button
            type="button"
            class="sidebar-toggle secondary"
            aria-expanded={sidebarOpen}
            aria-controls="sidebar"
            onClick={() => setSidebarOpenOn(sidebarOpen ? null : route.path)}
            data-testid="sidebar-toggle"
          >
            {sidebarOpen ? "Close" : `Runs (${runs.length})`}
          </button>
          <h1>
            <a href="#/generate">LVLM-Interpret</a>
          </h1>
          <span class="muted">
            {config
              ? `${config.model.name} (${config.model.text_model_type} + ${config.model.vision_model_type}) · ${config.model.status.state}`
              : "connecting…"}
          </span>
          {(route.page === "run" || route.page === "compare") && (
            <SettingsBar layered={current !== null && mapLayerGrids(current.image) !== null} />
          )}
        </header>
        <div class="body">
          <Sidebar
            page={route.path}
            open={sidebarOpen}
            runs={runs}
            interrupted={interrupted}
            onJobDismissed={() => void refreshInterrupted()}
            current={route.runId}
            picked={picked}
            hasBatch={hasBatch}
            onPick={onPick}
            onImported={(id) => {
              void refreshRuns();
              navigate(`#/run/${id}/summary`);
            }}
            onDeleted={(id) => {
              void refreshRuns();
              onPick(id, false);
              if (route.runId === id) navigate("#/generate");
            }}
          />
          <main>
            {route.page === "generate" && (
              <GenerateView config={config} onCreated={() => void refreshRuns()} />
            )}
            {route.page === "batch" && <BatchView />}
            {route.page === "compare" && route.compare && (
              <CompareView a={route.compare[0]} b={route.compare[1]} />
            )}
            {route.page === "run" && (
              <>
                <ErrorBox error={runError} />
                {!current && !runError && <p class="muted">Loading run…</p>}
                {current && (
                  <>
                    <RunHeader run={current} view={route.view ?? "summary"} />
                    <KeptViews
                      key={current.id}
                      view={route.view ?? "summary"}
                      views={VIEWS.map((v) => v.id)}
                      prefetch={(view) => prefetchView(view, current)}
                      render={(view, preloading) => {
                        const onChanged = () => loadRun(current.id);
                        // A view rendered ahead of its tab's click gets what the click would give it.
                        const params = preloading ? NO_PARAMS : route.params;
                        switch (view) {
                          case "summary":
                            return <SummaryView run={current} params={params} navigate={navigate} />;
                          case "maps":
                            return <MapsView run={current} params={params} navigate={navigate} />;
                          case "relevancy":
                            return <RelevancyView run={current} onChanged={onChanged} />;
                          case "causal":
                            return (
                              <CausalView
                                run={current}
                                params={params}
                                navigate={navigate}
                                onChanged={onChanged}
                              />
                            );
                          case "faithfulness":
                            return <FaithfulnessView run={current} />;
                          default:
                            return <ErrorBox error={`unknown view "${view}"`} />;
                        }
                      }}
                    />
                  </>
                )}
              </>
            )}
          </main>
        </div>
      </div>
    </SettingsContext.Provider>
  );
}
