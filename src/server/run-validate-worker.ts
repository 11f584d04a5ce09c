/** Worker thread for {@link validateRunDirOffThread}: validates one run folder per message. */
import { parentPort } from "node:worker_threads";
import { RunValidationError, validateRunDir } from "./run-validate.js";

const port = parentPort!;
port.on("message", ({ id, dir }: { id: number; dir: string }) => {
  try {
    port.postMessage({ id, ok: true, manifest: validateRunDir(dir) });
  } catch (e) {
    const err = e as Error;
    port.postMessage({
      id,
      ok: false,
      invalid: err instanceof RunValidationError,
      message: String(err?.message ?? e).split("\n")[0],
    });
  }
});
