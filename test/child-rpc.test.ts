/** askChild: one reply per request; an error reply or an exit before replying rejects, naming the child. */
import assert from "node:assert/strict";
import { fork } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { after, test } from "node:test";
import { askChild } from "../src/child-rpc.js";
import { tempDir } from "./fixture-utils.js";

const dir = tempDir("child-rpc");
after(() => fs.rmSync(dir, { recursive: true, force: true }));
const script = path.join(dir, "child.mjs");
fs.writeFileSync(
  script,
  `process.on("message", (m) => {
    if (m.op === "double") process.send({ value: m.value * 2 });
    else if (m.op === "fail") process.send({ error: "cannot do " + m.value });
    else process.exit(3);
  });`,
);

test("replies in order, error replies and early exits reject with the child's name", async () => {
  const child = fork(script, [], {
    serialization: "advanced",
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
  try {
    assert.deepEqual(await askChild(child, { op: "double", value: 21 }, "the doubler"), { value: 42 });
    assert.deepEqual(await askChild(child, { op: "double", value: 2 }, "the doubler"), { value: 4 });
    await assert.rejects(
      askChild(child, { op: "fail", value: 7 }, "the doubler"),
      /^Error: the doubler: cannot do 7$/,
    );
    await assert.rejects(
      askChild(child, { op: "exit" }, "the doubler"),
      /the doubler exited \(code 3\) before answering/,
    );
  } finally {
    child.kill();
  }
});
