/**
 * A run as one archive: export (validated first, so it imports back) and import (streamed through the
 * importer's bounds).
 */
import type { Readable } from "node:stream";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { type ImportResponse, importQuery, runIdParams } from "../../contracts/http.js";
import { checkExportable, exportRunStream, importArchive } from "../archive.js";
import { HttpError } from "../http-error.js";
import { parse, type RoutesOptions } from "../route-context.js";

/**
 * The uploaded file's name from `?name=` as a plain label: its last path part, printable characters only, at
 * most 200 of them (null when absent or empty). It is only shown, never used as a path.
 */
export function uploadName(raw: unknown): string | null {
  if (typeof raw !== "string") return null;
  const base = raw.split(/[\\/]/).pop() ?? "";
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is removed
  const clean = base.replace(/[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g, "").trim();
  return clean ? clean.slice(0, 200) : null;
}

export async function archiveRoutes(app: FastifyInstance, { ctx }: RoutesOptions): Promise<void> {
  const { store, limits } = ctx;
  app.get("/api/runs/:id/export", async (req, reply) => {
    const { id } = parse(runIdParams, req.params, "run");
    const dir = store.dir(id);
    // Only what would import back leaves the server (409 otherwise): the importer's own validation.
    await checkExportable(dir, limits);
    reply
      .type("application/gzip")
      .header("content-disposition", `attachment; filename="lvlm-run-${id}.tar.gz"`);
    return reply.send(exportRunStream(dir));
  });

  // Run archives arrive as the raw request body (only here), streamed through the importer's checks.
  await app.register(async (scope) => {
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser(
      ["application/gzip", "application/x-gzip", "application/x-tar", "application/octet-stream"],
      (_req, payload, done) => done(null, payload),
    );
    scope.post("/api/import", { config: { body: "archive" } }, importRoute);
  });
  async function importRoute(req: FastifyRequest, reply: FastifyReply) {
    const body = req.body as Readable | undefined;
    if (!body || typeof (body as Readable).pipe !== "function") {
      throw new HttpError(415, "send the run archive as the request body with content-type application/gzip");
    }
    // Streamed straight through the checks: a bomb is refused while it arrives, never stored first.
    const { name } = parse(importQuery, req.query, "query");
    const id = await importArchive(
      store,
      body,
      {
        maxArchiveBytes: limits.maxImportBytes,
        maxUnpackedBytes: limits.maxUnpackedBytes,
        maxRatio: limits.maxImportRatio,
      },
      uploadName(name),
    );
    const run = store.get(id);
    if (!run) throw new Error(`imported run "${id}" is not in the index`);
    return reply.code(201).send({ run } satisfies ImportResponse);
  }
}
