/**
 * The Node.js versions the README promises must be ones every installed dependency declares support for, so
 * `npm install` on a supported Node never warns EBADENGINE and nothing we ship needs a newer runtime.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { test } from "node:test";
import semver from "semver";
import { PROJECT_ROOT } from "../src/cli/default-model.js";

const pkg = JSON.parse(fs.readFileSync(path.join(PROJECT_ROOT, "package.json"), "utf8"));
const lock = JSON.parse(fs.readFileSync(path.join(PROJECT_ROOT, "package-lock.json"), "utf8"));

/** The lowest version of each major the project's `engines.node` range admits (20, 22, 24). */
function supportedFloors(range: string): string[] {
  return [20, 22, 24].map((major) => {
    const floor = semver.minSatisfying(
      Array.from({ length: 40 }, (_, minor) => `${major}.${minor}.0`),
      range,
    );
    assert.ok(floor, `package.json engines.node "${range}" admits no Node ${major}.x`);
    return floor;
  });
}

test("every dependency's engines.node includes every Node version package.json claims", () => {
  const floors = supportedFloors(pkg.engines.node);
  assert.ok(
    semver.satisfies(process.version, pkg.engines.node),
    `this Node ${process.version} is not claimed`,
  );
  const conflicts: string[] = [];
  for (const [where, entry] of Object.entries<{ engines?: { node?: string }; optional?: boolean }>(
    lock.packages,
  )) {
    const range = entry.engines?.node;
    if (!where || !range) continue;
    // Platform packages for other systems (sharp's, rolldown's) are listed but never installed here.
    if (entry.optional && !fs.existsSync(path.join(PROJECT_ROOT, where))) continue;
    for (const v of floors)
      if (!semver.satisfies(v, range)) conflicts.push(`${where} needs node ${range} (not ${v})`);
  }
  assert.deepEqual(conflicts, []);
});

test("the README states the supported Node versions that package.json claims", () => {
  const readme = fs.readFileSync(path.join(PROJECT_ROOT, "README.md"), "utf8");
  for (const v of supportedFloors(pkg.engines.node)) {
    const [major, minor] = v.split(".");
    const stated = minor === "0" ? new RegExp(`\\b${major}\\b`) : new RegExp(`\\b${major}\\.${minor}\\b`);
    assert.match(readme, stated, `README.md does not mention Node ${v}`);
  }
});
