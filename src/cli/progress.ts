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
