/** Progress lines on stderr: redrawn in place on a terminal, one line per stage change otherwise. */
export function stderrProgress(): (stage: string, done: number, total: number) => void {
  const tty = process.stderr.isTTY;
  let last = "";
  return (stage, done, total) => {
    const line = `[${stage}] ${done}/${total}`;
    if (tty) {
      process.stderr.write(`\r${line}\x1b[K${done === total ? "\n" : ""}`);
    } else if (stage !== last || done === total) {
      process.stderr.write(`${line}\n`);
    }
    last = stage;
  };
}
