/**
 * Progress lines on stderr: redrawn in place on a terminal; otherwise (logs, CI) one line per stage change
 * and per tenth of the work, so a long job still shows it is moving.
 */
export function stderrProgress(): (stage: string, done: number, total: number) => void {
  const tty = process.stderr.isTTY;
  let last = "";
  let lastTenth = -1;
  return (stage, done, total) => {
    const line = `[${stage}] ${done}/${total}`;
    const tenth = total > 0 ? Math.floor((10 * done) / total) : 0;
    if (tty) {
      process.stderr.write(`\r${line}\x1b[K${done === total ? "\n" : ""}`);
    } else if (stage !== last || tenth !== lastTenth || done === total) {
      process.stderr.write(`${line}\n`);
    }
    last = stage;
    lastTenth = tenth;
  };
}

/** "42 s", "3 min 05 s", "1 h 02 min": an ETA readable at a glance. */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, "0")} s`;
  return `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")} min`;
}

/**
 * Remaining time of a job from the items computed so far in this session (skipped items cost nothing and
 * are left out of the rate); null until one item has been computed.
 */
export function etaSeconds(computedSeconds: number, computed: number, remaining: number): number | null {
  return computed > 0 ? (computedSeconds / computed) * remaining : null;
}
