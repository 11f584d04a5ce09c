/** An error with an HTTP status whose message is shown to the user as is. */
export class HttpError extends Error {
  override name = "HttpError";
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export const badRequest = (msg: string) => new HttpError(400, msg);
export const notFound = (msg: string) => new HttpError(404, msg);
export const conflict = (msg: string) => new HttpError(409, msg);
export const tooLarge = (msg: string) => new HttpError(413, msg);
export const unsupportedType = (msg: string) => new HttpError(415, msg);

/** A client's text inside a message: JSON-quoted, at most `max` characters of it (then "…"). */
export function quoted(text: string, max = 60): string {
  const s = String(text);
  return JSON.stringify(s.length > max ? `${s.slice(0, max)}…` : s);
}
