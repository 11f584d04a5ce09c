/** Helpers for server tests: a server on a free loopback port over a temp data dir, SSE reading, raw tar. */
import * as fs from "node:fs";
import * as path from "node:path";
import * as zlib from "node:zlib";
import { buildServer, type LvlmServer, type ServerLimits } from "../src/server/app.js";
import { fixtureDir, tempDir } from "./fixture-utils.js";

export interface TestServer {
  server: LvlmServer;
  base: string;
  dataDir: string;
  close(): Promise<void>;
}

export async function startTestServer(
  opts: { limits?: Partial<ServerLimits>; dataDir?: string; webDir?: string; modelDir?: string } = {},
): Promise<TestServer> {
  const dataDir = opts.dataDir ?? tempDir("server-data");
  const server = await buildServer({
    modelDir: opts.modelDir ?? fixtureDir("llava-tiny-llama"),
    dataDir,
    kernels: "ts",
    limits: opts.limits,
    webDir: opts.webDir,
  });
  const base = await server.app.listen({ port: 0, host: "127.0.0.1" });
  return {
    server,
    base,
    dataDir,
    async close() {
      await server.close();
    },
  };
}

export interface SseEvent {
  type: string;
  data: any;
}

/** Reads a job's event stream until it ends (done/error/cancelled), or `stopWhen` returns true. */
export async function readJobEvents(
  base: string,
  jobId: string,
  stopWhen?: (e: SseEvent, all: SseEvent[]) => boolean,
): Promise<SseEvent[]> {
  const res = await fetch(`${base}/api/jobs/${jobId}/events`);
  if (res.status !== 200) throw new Error(`events: HTTP ${res.status} ${await res.text()}`);
  if (!res.headers.get("content-type")?.startsWith("text/event-stream"))
    throw new Error("events: not an event stream");
  const events: SseEvent[] = [];
  const reader = res.body!.getReader();
  const dec = new TextDecoder();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += dec.decode(value, { stream: true });
    let i = buf.indexOf("\n\n");
    while (i >= 0) {
      const block = buf.slice(0, i);
      buf = buf.slice(i + 2);
      i = buf.indexOf("\n\n");
      let type = "message";
      let data = "";
      for (const line of block.split("\n")) {
        if (line.startsWith("event: ")) type = line.slice(7);
        else if (line.startsWith("data: ")) data += line.slice(6);
      }
      if (!data) continue;
      const e = { type, data: JSON.parse(data) };
      events.push(e);
      if (stopWhen?.(e, events)) {
        await reader.cancel();
        return events;
      }
    }
  }
  return events;
}

export function imageForm(
  bytes: Uint8Array,
  fields: Record<string, string>,
  fileName = "image.png",
  type = "image/png",
): FormData {
  const fd = new FormData();
  for (const [k, v] of Object.entries(fields)) fd.append(k, v);
  fd.append("image", new Blob([bytes], { type }), fileName);
  return fd;
}

export function fixtureImage(): Uint8Array {
  return fs.readFileSync(path.join(fixtureDir("llava-tiny-llama"), "image.png"));
}

export interface RawTarEntry {
  name: string;
  /** ustar type flag: "0" file, "5" directory, "2" symlink, "1" hard link. */
  type?: string;
  data?: Uint8Array | string;
  linkname?: string;
}

/** A tar built byte by byte, so tests can make archives no tar tool would (traversal, links); `end` adds the two zero blocks. */
export function rawTar(entries: RawTarEntry[], opts: { end?: boolean } = {}): Buffer {
  const blocks: Buffer[] = [];
  for (const e of entries) {
    const data = e.data === undefined ? Buffer.alloc(0) : Buffer.from(e.data);
    const h = Buffer.alloc(512);
    h.write(e.name, 0, 100, "utf8");
    h.write("0000644\0", 100);
    h.write("0000000\0", 108);
    h.write("0000000\0", 116);
    h.write(`${data.length.toString(8).padStart(11, "0")}\0`, 124);
    h.write("00000000000\0", 136);
    h.write("        ", 148);
    h.write(e.type ?? "0", 156);
    if (e.linkname) h.write(e.linkname, 157, 100);
    h.write("ustar\0", 257);
    h.write("00", 263);
    let sum = 0;
    for (const b of h) sum += b;
    h.write(`${sum.toString(8).padStart(6, "0")}\0 `, 148);
    blocks.push(h, data, Buffer.alloc((512 - (data.length % 512)) % 512));
  }
  if (opts.end !== false) blocks.push(Buffer.alloc(1024));
  return Buffer.concat(blocks);
}

/** A gzip'd {@link rawTar}. */
export function rawTarGz(entries: RawTarEntry[]): Buffer {
  return zlib.gzipSync(rawTar(entries));
}
