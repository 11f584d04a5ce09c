/** The faithfulness check's endpoints (src/server/routes/faithfulness.ts); numbers as the library wrote them. */
import type { FaithfulnessResult } from "../../src/contracts/http";
import { ApiError, type JobInfo } from "./api";

export type { FaithfulnessResult };

async function call<T>(method: string, url: string, body?: unknown): Promise<T> {
  let res: Response;
  try {
    res = await fetch(url, {
      method,
      body: body === undefined ? undefined : JSON.stringify(body),
      headers: body === undefined ? undefined : { "content-type": "application/json" },
    });
  } catch (e) {
    throw new ApiError(0, `cannot reach the server (${(e as Error).message})`);
  }
  const text = await res.text();
  let data: unknown = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    // Not JSON: reported below when the status is an error.
  }
  if (!res.ok)
    throw new ApiError(
      res.status,
      (data as { error?: string } | null)?.error ?? (text.slice(0, 200) || res.statusText),
    );
  return data as T;
}

const enc = encodeURIComponent;

export const faithfulnessApi = {
  /** The stored check, or null when none was made for this token and map. */
  get: async (id: string, token: number, map: string): Promise<FaithfulnessResult | null> => {
    try {
      return await call<FaithfulnessResult>(
        "GET",
        `/api/runs/${enc(id)}/faithfulness?token=${token}&map=${enc(map)}`,
      );
    } catch (e) {
      if (e instanceof ApiError && e.status === 404) return null;
      throw e;
    }
  },
  compute: (id: string, token: number, map: string, steps: number, seeds: number) =>
    call<{ job: JobInfo }>("POST", `/api/runs/${enc(id)}/faithfulness`, { token, map, steps, seeds }),
};
