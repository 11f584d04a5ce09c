/**
 * Reading a generate request: the multipart form (fields and the image file) and the question's checks. Every
 * client mistake is a 4xx that says what to fix: a malformed or truncated form, a field over its size (never
 * silently cut), a question over the limit or containing the image placeholder. Text the model's tokenizer
 * cannot read comes back as a warning.
 */
import type { FastifyError, FastifyRequest } from "fastify";
import { type GenerateFields, generateFields } from "../contracts/http.js";
import type { TextProcessor } from "../hf/tokenizer.js";
import { HttpError, quoted } from "./http-error.js";
import { zodMessage } from "./run-validate.js";

export interface UploadedImage {
  bytes: Buffer;
  name: string;
}

/** Largest multipart text field in bytes: room for the longest allowed question in UTF-8, so none is cut. */
export function fieldSizeLimit(maxPromptChars: number): number {
  return Math.max(64 * 1024, maxPromptChars * 4 + 1024);
}

/** The form's fields (validated) and its image, if any; 4xx for anything that is not a well-formed form. */
export async function readGenerateForm(
  req: FastifyRequest,
  limits: { maxPromptChars: number; maxNewTokens: number },
): Promise<{ fields: GenerateFields; image: UploadedImage | null }> {
  if (!req.isMultipart()) throw new HttpError(415, "send the image and fields as multipart/form-data");
  const raw: Record<string, string> = {};
  let image: UploadedImage | null = null;
  try {
    for await (const part of req.parts()) {
      if (part.type === "file") {
        if (part.fieldname !== "image")
          throw new HttpError(
            400,
            `unexpected file field ${quoted(part.fieldname)} (send the image as "image")`,
          );
        image = { bytes: await part.toBuffer(), name: part.filename || "upload" };
      } else {
        if (part.fieldnameTruncated) throw new HttpError(400, "a form field name is too long");
        if (part.valueTruncated) {
          const bytes = fieldSizeLimit(limits.maxPromptChars);
          throw new HttpError(
            400,
            part.fieldname === "prompt"
              ? `the question is longer than ${bytes} bytes; the limit is ${limits.maxPromptChars} characters`
              : `form field ${quoted(part.fieldname)} is longer than ${bytes} bytes`,
          );
        }
        // A part sent as application/json arrives parsed; the fields are all text.
        if (typeof part.value !== "string")
          throw new HttpError(400, `form field ${quoted(part.fieldname)} must be text, not JSON`);
        raw[part.fieldname] = part.value;
      }
    }
  } catch (e) {
    // Errors of the form itself (no boundary, cut short, bad part headers) come from the multipart parser as
    // plain errors; its limit errors carry their own 4xx status.
    const status = (e as FastifyError).statusCode;
    if (e instanceof HttpError || (status !== undefined && status >= 400)) throw e;
    throw new HttpError(
      400,
      `malformed multipart form (${String((e as Error).message)
        .split("\n")[0]
        .slice(0, 100)}): send the image and fields as multipart/form-data`,
    );
  }
  const r = generateFields.safeParse(raw);
  if (!r.success) throw new HttpError(400, `fields: ${zodMessage(r.error)}`);
  const fields = r.data;
  if (fields.prompt.length > limits.maxPromptChars)
    throw new HttpError(
      400,
      `the question is ${fields.prompt.length} characters; the limit is ${limits.maxPromptChars}`,
    );
  if (fields.max_new_tokens > limits.maxNewTokens)
    throw new HttpError(
      400,
      `max_new_tokens ${fields.max_new_tokens} is over the limit of ${limits.maxNewTokens}`,
    );
  return { fields, image };
}

/**
 * The question as the model's tokenizer sees it: 400 when it contains the image placeholder; warnings for text
 * read as unknown tokens. Without a tokenizer (it failed to load; the job will report that) nothing is checked.
 */
export function checkQuestion(tokenizer: TextProcessor | null, question: string): string[] {
  if (!tokenizer) return [];
  const problem = tokenizer.placeholderProblem(question);
  if (problem) throw new HttpError(400, problem);
  const unknown = tokenizer.unknownTokenWarning(question);
  return unknown ? [unknown] : [];
}
