/**
 * A test server in a process of its own, for tests that kill it (kill -9): it prints `{"base": "<url>"}` on a
 * line of stdout once listening. It does nothing unless LVLM_TEST_SERVER_DATA is set, because the test runner
 * also loads every file under test/ as a test file.
 */
import { startTestServer } from "./server-utils.js";

const dataDir = process.env.LVLM_TEST_SERVER_DATA;
if (dataDir) {
  const ts = await startTestServer({ dataDir });
  process.stdout.write(`${JSON.stringify({ base: ts.base })}\n`);
}
