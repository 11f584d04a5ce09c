/**
 * Request/reply over a forked child's IPC channel, one reply per request (the training and benchmark workers).
 * A child that exits before replying, or replies `{ error }`, rejects the request with a message naming it.
 */
import type { ChildProcess } from "node:child_process";

export function askChild<T>(child: ChildProcess, request: unknown, who: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onExit = (code: number | null) => {
      child.off("message", onMessage);
      reject(new Error(`${who} exited (code ${code}) before answering`));
    };
    const onMessage = (m: unknown) => {
      child.off("exit", onExit);
      const error = m !== null && typeof m === "object" ? (m as { error?: unknown }).error : undefined;
      if (typeof error === "string") reject(new Error(`${who}: ${error}`));
      else resolve(m as T);
    };
    child.once("exit", onExit);
    child.once("message", onMessage);
    child.send(request as object);
  });
}
