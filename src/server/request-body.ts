/**
 * What the server accepts as a request body, checked before any route runs, so that a body an endpoint does
 * not expect is a 4xx with a message rather than silently ignored, defaulted, or a 500:
 *  - each route declares the body it takes (`config.body`); a route that declares none refuses any body;
 *  - JSON is parsed here: malformed or empty JSON and prototype-changing keys are 400s that say which;
 *  - compressed bodies (Content-Encoding) are refused: nothing here decompresses them.
 * The multipart and archive parsers are registered only in the scopes of the routes that take them.
 */
import type { FastifyInstance, FastifyRequest } from "fastify";
import { HttpError, quoted } from "./http-error.js";

declare module "fastify" {
  interface FastifyContextConfig {
    /** The request body this route takes; none when absent. */
    body?: "json" | "multipart" | "archive";
  }
}

const BODYLESS_METHODS = new Set(["GET", "HEAD", "OPTIONS"]);

const EXPECTED = {
  json: "send a JSON object (content-type application/json)",
  multipart: "send the image and fields as multipart/form-data",
  archive: "send the run archive (.tar.gz) with content-type application/gzip",
  none: "this endpoint takes no request body",
} as const;

/** What the request's route takes as its body, in words (for 415 and 400 messages). */
export function expectedBody(req: FastifyRequest): string {
  if (req.is404) return "no such endpoint";
  return EXPECTED[req.routeOptions.config?.body ?? "none"];
}

/** Whether the request carries a body at all (by its headers; nothing is read). */
export function hasBody(req: FastifyRequest): boolean {
  const len = req.headers["content-length"];
  return req.headers["transfer-encoding"] !== undefined || (len !== undefined && len !== "0");
}

/**
 * JSON.parse that refuses `__proto__` keys and `constructor.prototype` (as Fastify's default parser does, but
 * saying so instead of calling the body malformed).
 */
export function parseJsonBody(text: string): unknown {
  if (text.trim() === "") throw new HttpError(400, "empty JSON body: send a JSON object");
  let forbidden: string | null = null;
  let value: unknown;
  try {
    value = JSON.parse(text, (key, v) => {
      if (key === "__proto__") forbidden ??= "__proto__";
      else if (key === "constructor" && v && typeof v === "object" && Object.hasOwn(v, "prototype"))
        forbidden ??= "constructor.prototype";
      return v;
    });
  } catch (e) {
    throw new HttpError(400, `malformed JSON body: ${(e as Error).message.split("\n")[0]}`);
  }
  if (forbidden)
    throw new HttpError(
      400,
      `JSON body: the key "${forbidden}" is not accepted (it could change object prototypes); remove it`,
    );
  return value;
}

/** Installs the JSON parser and the body checks on the root scope (before any route is registered). */
export function guardRequestBodies(app: FastifyInstance): void {
  app.removeAllContentTypeParsers();
  app.addContentTypeParser("application/json", { parseAs: "string" }, (_req, body, done) => {
    try {
      done(null, parseJsonBody(body as string));
    } catch (e) {
      done(e as Error, undefined);
    }
  });
  app.addHook("onRequest", async (req) => {
    const enc = String(req.headers["content-encoding"] ?? "identity")
      .trim()
      .toLowerCase();
    if (enc !== "identity" && hasBody(req))
      throw new HttpError(
        415,
        `content-encoding ${quoted(enc)} is not supported: send the request body uncompressed`,
      );
  });
  app.addHook("preValidation", async (req) => {
    if (req.is404 || BODYLESS_METHODS.has(req.method) || req.routeOptions.config?.body) return;
    if (req.body !== undefined || hasBody(req))
      throw new HttpError(400, `${req.method} ${req.routeOptions.url} takes no request body; send none`);
  });
}
