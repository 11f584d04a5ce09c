/**
 * Generate: pick or drop an image (PNG/JPEG/WebP), paint over it (brush, eraser, colour, undo) to occlude or
 * alter a region, choose the settings, ask; the answer streams token by token over server-sent events.
 *
 * The upload is the original file when it is unpainted (the server decodes it exactly as the CLI does, as
 * Pillow would); a painted image is sent as the PNG of the canvas. A file that is cut short or that the browser
 * decodes only in part is refused with a message in place of the picture: nothing to paint, nothing to send.
 */
import { useEffect, useRef, useState } from "preact/hooks";
import { api, type ServerConfig } from "../api";
import { incompleteImage } from "../image-complete";
import { ErrorBox, ExportPng, JobProgress, Panel, tokenLabel, useJob } from "./common";

const MAX_WORKING_SIDE = 1024;
const ACCEPT = ["image/png", "image/jpeg", "image/webp"];

interface Loaded {
  file: File;
  image: ImageBitmap;
  width: number;
  height: number;
}

export function GenerateView({
  config,
  onCreated,
}: {
  config: ServerConfig | null;
  onCreated: (runId: string) => void;
}) {
  const [loaded, setLoaded] = useState<Loaded | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [imageError, setImageError] = useState<string | null>(null);
  const [tool, setTool] = useState<"brush" | "eraser">("brush");
  const [color, setColor] = useState("#000000");
  const [size, setSize] = useState(24);
  const [painted, setPainted] = useState(false);
  const [undoDepth, setUndoDepth] = useState(0);
  const [question, setQuestion] = useState("What is shown in the image?");
  const [imageMode, setImageMode] = useState("default");
  const [temperature, setTemperature] = useState(0);
  const [topP, setTopP] = useState(1);
  const [maxNew, setMaxNew] = useState(32);
  const [seed, setSeed] = useState(0);
  const [attnDtype, setAttnDtype] = useState("f16");
  const [answer, setAnswer] = useState<string[]>([]);
  const [runId, setRunId] = useState<string | null>(null);
  const [finalAnswer, setFinalAnswer] = useState<string | null>(null);
  const [warnings, setWarnings] = useState<string[]>([]);
  const [dragging, setDragging] = useState(false);
  const baseRef = useRef<HTMLCanvasElement>(null);
  const paintRef = useRef<HTMLCanvasElement>(null);
  const undo = useRef<ImageData[]>([]);
  const stroke = useRef<{ x: number; y: number } | null>(null);
  const pending = useRef<string[]>([]);
  /** Indices of control tokens ("</s>"): part of the run, not of the answer's text. */
  const specials = useRef<Set<number>>(new Set());
  const frame = useRef(0);
  const root = useRef<HTMLDivElement>(null);
  const opening = useRef(0);

  const { job, start, cancel, busy } = useJob({
    token: (index, text, special) => {
      pending.current[index] = text;
      if (special) specials.current.add(index);
      if (!frame.current) {
        // Tokens arrive in bursts: render once per frame.
        frame.current = requestAnimationFrame(() => {
          frame.current = 0;
          setAnswer([...pending.current]);
        });
      }
    },
    done: (r) => {
      const id = String(r.runId);
      setAnswer((r.tokens as string[]) ?? [...pending.current]);
      setFinalAnswer(typeof r.answer === "string" ? r.answer : null);
      setRunId(id);
      onCreated(id);
    },
  });

  useEffect(() => {
    if (!loaded) return;
    const base = baseRef.current!;
    const paint = paintRef.current!;
    for (const c of [base, paint]) {
      c.width = loaded.width;
      c.height = loaded.height;
    }
    base.getContext("2d")!.drawImage(loaded.image, 0, 0, loaded.width, loaded.height);
    paint.getContext("2d")!.clearRect(0, 0, loaded.width, loaded.height);
    undo.current = [];
    setUndoDepth(0);
    setPainted(false);
    return () => loaded.image.close();
  }, [loaded]);

  const openFile = async (file: File | undefined | null) => {
    if (!file) return;
    const attempt = ++opening.current;
    // A refused file replaces the picture: the previous one must not look like the new one.
    const refuse = (message: string) => {
      if (attempt !== opening.current) return;
      setLoaded(null);
      setImageError(message);
    };
    setImageError(null);
    setError(null);
    const typeOk = ACCEPT.includes(file.type) || /\.(png|jpe?g|webp)$/i.test(file.name);
    if (!typeOk) return refuse(`${file.name}: not a PNG, JPEG or WebP image`);
    if (config && file.size > config.limits.maxUploadBytes) {
      return refuse(
        `${file.name} is ${(file.size / 2 ** 20).toFixed(1)} MiB; the upload limit is ${(config.limits.maxUploadBytes / 2 ** 20).toFixed(0)} MiB`,
      );
    }
    let image: ImageBitmap;
    try {
      const problem = incompleteImage(new Uint8Array(await file.arrayBuffer()));
      if (problem) return refuse(`${file.name}: ${problem}`);
      // Unlike an <img>, which shows whatever part of a file decodes, createImageBitmap fails on a partial decode.
      image = await createImageBitmap(file);
    } catch {
      return refuse(`${file.name}: the browser cannot decode this image (is it truncated or corrupt?)`);
    }
    if (attempt !== opening.current) return image.close();
    const w = image.width;
    const h = image.height;
    if (config && w * h > config.limits.maxPixels) {
      image.close();
      return refuse(
        `${file.name} is ${w}×${h} pixels, over the ${(config.limits.maxPixels / 1e6).toFixed(0)} megapixel limit`,
      );
    }
    const k = Math.min(1, MAX_WORKING_SIDE / Math.max(w, h));
    setLoaded({ file, image, width: Math.max(1, Math.round(w * k)), height: Math.max(1, Math.round(h * k)) });
  };

  const toCanvas = (e: PointerEvent) => {
    const c = paintRef.current!;
    const r = c.getBoundingClientRect();
    return {
      x: ((e.clientX - r.left) * c.width) / r.width,
      y: ((e.clientY - r.top) * c.height) / r.height,
      k: c.width / r.width,
    };
  };
  const drawTo = (e: PointerEvent) => {
    const c = paintRef.current!;
    const ctx = c.getContext("2d")!;
    const p = toCanvas(e);
    const from = stroke.current ?? p;
    ctx.save();
    ctx.globalCompositeOperation = tool === "eraser" ? "destination-out" : "source-over";
    ctx.strokeStyle = color;
    ctx.fillStyle = color;
    ctx.lineWidth = size * p.k;
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    ctx.beginPath();
    ctx.moveTo(from.x, from.y);
    ctx.lineTo(p.x + 0.01, p.y);
    ctx.stroke();
    ctx.restore();
    stroke.current = p;
  };
  const onDown = (e: PointerEvent) => {
    if (!loaded || busy) return;
    const c = paintRef.current!;
    c.setPointerCapture(e.pointerId);
    undo.current.push(c.getContext("2d")!.getImageData(0, 0, c.width, c.height));
    if (undo.current.length > 30) undo.current.shift();
    setUndoDepth(undo.current.length);
    stroke.current = null;
    drawTo(e);
    setPainted(true);
  };
  const onMove = (e: PointerEvent) => {
    if (stroke.current && e.buttons & 1) drawTo(e);
  };
  const onUp = () => {
    stroke.current = null;
  };
  const doUndo = () => {
    const snap = undo.current.pop();
    if (!snap) return;
    paintRef.current!.getContext("2d")!.putImageData(snap, 0, 0);
    setUndoDepth(undo.current.length);
    setPainted(undo.current.length > 0);
  };
  const clearPaint = () => {
    const c = paintRef.current!;
    undo.current.push(c.getContext("2d")!.getImageData(0, 0, c.width, c.height));
    setUndoDepth(undo.current.length);
    c.getContext("2d")!.clearRect(0, 0, c.width, c.height);
    setPainted(false);
  };

  const imageBlob = async (): Promise<{ blob: Blob; name: string }> => {
    const f = loaded!.file;
    if (!painted) return { blob: f, name: f.name };
    const out = document.createElement("canvas");
    out.width = loaded!.width;
    out.height = loaded!.height;
    const ctx = out.getContext("2d")!;
    ctx.drawImage(baseRef.current!, 0, 0);
    ctx.drawImage(paintRef.current!, 0, 0);
    const blob = await new Promise<Blob>((res, rej) =>
      out.toBlob((b) => (b ? res(b) : rej(new Error("PNG encoding failed"))), "image/png"),
    );
    return { blob, name: `${f.name.replace(/\.[^.]*$/, "")}${painted ? "-edited" : ""}.png` };
  };

  const ask = async () => {
    setError(null);
    if (!loaded) return setError("choose an image first");
    if (!question.trim()) return setError("ask a question");
    pending.current = [];
    specials.current = new Set();
    setAnswer([]);
    setRunId(null);
    setFinalAnswer(null);
    setWarnings([]);
    const { blob, name } = await imageBlob();
    const form = new FormData();
    form.append("prompt", question);
    form.append("max_new_tokens", String(maxNew));
    form.append("temperature", String(temperature));
    form.append("top_p", String(topP));
    form.append("seed", String(seed));
    form.append("image_mode", imageMode);
    form.append("attn_dtype", attnDtype);
    form.append("image", blob, name);
    await start(async () => {
      const r = await api.generate(form);
      setWarnings(r.warnings ?? []);
      return r;
    });
  };

  // The answer as text: the run's own (decoded as a whole) once saved; while streaming, its tokens so far.
  const answerText = finalAnswer ?? answer.filter((_, i) => !specials.current.has(i)).join(" ");

  return (
    <div class="generate" ref={root}>
      <Panel
        title="Image"
        testId="image-panel"
        tools={
          <ExportPng
            target={root}
            name={runId ? `generate-${runId}.png` : "generate.png"}
            caption={[
              { label: "Q", text: question },
              { label: "A", text: answerText },
            ]}
          />
        }
      >
        {/* biome-ignore lint/a11y/noStaticElementInteractions: the drop zone also has a file input */}
        <div
          class={`dropzone${dragging ? " dragging" : ""}${loaded ? " has-image" : ""}`}
          onDragOver={(e) => {
            e.preventDefault();
            setDragging(true);
          }}
          onDragLeave={() => setDragging(false)}
          onDrop={(e) => {
            e.preventDefault();
            setDragging(false);
            void openFile(e.dataTransfer?.files[0]);
          }}
          data-testid="dropzone"
        >
          <div
            class="paint-stack"
            style={{
              display: loaded ? "block" : "none",
              aspectRatio: loaded ? `${loaded.width} / ${loaded.height}` : undefined,
            }}
          >
            <canvas
              ref={baseRef}
              class="paint-base"
              role="img"
              aria-label={loaded ? `the chosen image, ${loaded.file.name}` : "no image"}
            />
            <canvas
              ref={paintRef}
              role="img"
              aria-label="paint layer over the image: draw with the mouse or a pen to occlude or alter a region"
              class={`paint-layer tool-${tool}`}
              data-testid="paint-canvas"
              onPointerDown={onDown}
              onPointerMove={onMove}
              onPointerUp={onUp}
              onPointerCancel={onUp}
            />
          </div>
          {!loaded && <p class="muted">Drop a PNG, JPEG or WebP image here, or choose one.</p>}
          <label class="file-button">
            {loaded ? "Change image…" : "Choose image…"}
            <input
              type="file"
              accept="image/png,image/jpeg,image/webp"
              data-testid="image-input"
              onChange={(e) => void openFile((e.target as HTMLInputElement).files?.[0])}
            />
          </label>
        </div>
        <ErrorBox error={imageError} />
        {loaded && (
          <div class="paint-tools" data-testid="paint-tools">
            <span class="muted">
              {loaded.file.name} · {loaded.image.width}×{loaded.image.height}
            </span>
            <div class="seg">
              <button
                type="button"
                class={tool === "brush" ? "on" : ""}
                onClick={() => setTool("brush")}
                data-testid="tool-brush"
              >
                Brush
              </button>
              <button
                type="button"
                class={tool === "eraser" ? "on" : ""}
                onClick={() => setTool("eraser")}
                data-testid="tool-eraser"
              >
                Eraser
              </button>
            </div>
            <input
              type="color"
              value={color}
              onInput={(e) => setColor((e.target as HTMLInputElement).value)}
              title="brush colour"
              data-testid="brush-color"
            />
            <label>
              size{" "}
              <input
                type="range"
                min={2}
                max={120}
                value={size}
                onInput={(e) => setSize(Number((e.target as HTMLInputElement).value))}
              />
            </label>
            <button
              type="button"
              class="secondary"
              onClick={doUndo}
              disabled={undoDepth === 0}
              data-testid="undo"
            >
              Undo
            </button>
            <button type="button" class="secondary" onClick={clearPaint} disabled={!painted}>
              Clear paint
            </button>
            {painted && <span class="badge">edited</span>}
          </div>
        )}
      </Panel>

      <Panel title="Question" testId="question-panel">
        <textarea
          rows={3}
          value={question}
          maxLength={config?.limits.maxPromptChars}
          onInput={(e) => setQuestion((e.target as HTMLTextAreaElement).value)}
          data-testid="question"
          onKeyDown={(e) => {
            if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) void ask();
          }}
        />
        <div class="form-grid">
          <label>
            image mode
            <select
              value={imageMode}
              onChange={(e) => setImageMode((e.target as HTMLSelectElement).value)}
              data-testid="image-mode"
            >
              <option value="default">default (processor)</option>
              <option value="pad">pad to square</option>
              <option value="resize">resize to square</option>
            </select>
          </label>
          <label>
            temperature
            <input
              type="number"
              min={0}
              max={2}
              step={0.1}
              value={temperature}
              onInput={(e) => setTemperature(Number((e.target as HTMLInputElement).value))}
              data-testid="temperature"
            />
          </label>
          <label>
            top-p
            <input
              type="number"
              min={0.05}
              max={1}
              step={0.05}
              value={topP}
              onInput={(e) => setTopP(Number((e.target as HTMLInputElement).value))}
              data-testid="top-p"
            />
          </label>
          <label>
            max new tokens
            <input
              type="number"
              min={1}
              max={config?.limits.maxNewTokens ?? 1024}
              value={maxNew}
              onInput={(e) => setMaxNew(Number((e.target as HTMLInputElement).value))}
              data-testid="max-new-tokens"
            />
          </label>
          <label>
            seed
            <input
              type="number"
              min={0}
              value={seed}
              onInput={(e) => setSeed(Number((e.target as HTMLInputElement).value))}
            />
          </label>
          <label>
            attention storage
            <select value={attnDtype} onChange={(e) => setAttnDtype((e.target as HTMLSelectElement).value)}>
              <option value="f16">f16 (half the size)</option>
              <option value="f32">f32</option>
            </select>
          </label>
        </div>
        <div class="actions">
          <button type="button" onClick={ask} disabled={busy || !loaded} data-testid="ask">
            Ask
          </button>
          <span class="muted">Ctrl+Enter</span>
        </div>
        <ErrorBox error={error} />
        {warnings.map((w) => (
          <div key={w} class="warning" role="note" data-testid="question-warning">
            {w}
          </div>
        ))}
        <JobProgress job={job} onCancel={cancel} label="Generation" doneText="Answer ready." />
        {(answer.length > 0 || job.state === "running") && (
          <div class="answer-box" data-testid="answer" data-state={job.state}>
            {answer.map((t, i) =>
              specials.current.has(i) ? null : (
                <span key={i} class="answer-token">
                  {tokenLabel(t)}
                </span>
              ),
            )}
            {busy && <span class="cursor">▍</span>}
          </div>
        )}
        {runId && (
          <div class="actions" data-testid="open-views">
            <span class="muted">Saved as run {runId}.</span>
            {(["summary", "maps", "relevancy", "causal"] as const).map((v) => (
              <a key={v} class="button secondary" href={`#/run/${runId}/${v}`}>
                {v === "summary"
                  ? "Attention summary"
                  : v === "maps"
                    ? "Attention maps"
                    : v === "relevancy"
                      ? "Relevancy"
                      : "Causality"}
              </a>
            ))}
          </div>
        )}
      </Panel>
    </div>
  );
}
