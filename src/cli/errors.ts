/**
 * CLI error reporting: every failure is one readable line and a non-zero exit. A stack trace only with
 * LVLM_DEBUG=1, because for a user the message is the product and the trace is noise.
 */
export function reportAndExit(e: unknown): never {
  const msg = e instanceof Error ? e.message : String(e);
  process.stderr.write(`error: ${msg.split("\n")[0]}\n`);
  if (process.env.LVLM_DEBUG && e instanceof Error && e.stack) process.stderr.write(`${e.stack}\n`);
  process.exit(1);
}
