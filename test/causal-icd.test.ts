/**
 * Ordered ICD driven by a perfect CI oracle (d-separation on a known DAG), so structure learning is checked
 * without any attention data. Expected PAGs are derived by hand: with a known causal order every edge starts
 * as earlier o-> later, unshielded colliders get arrowheads, then R1 (and the others) propagate.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { DSeparationOracle } from "../src/interpret/causal/ci-test.js";
import { OrderedICD } from "../src/interpret/causal/icd.js";
import { edgeString } from "../src/interpret/causal/pag.js";
import { createPdsTree } from "../src/interpret/causal/pds-tree.js";
import { PySet } from "../src/interpret/causal/py-set.js";

function learn(observed: number[], dag: [number, number][], latent: number[] = []) {
  const oracle = new DSeparationOracle([...observed, ...latent], dag);
  const icd = new OrderedICD(
    PySet.from(observed),
    [...observed].sort((a, b) => a - b),
    oracle,
  );
  const graph = icd.learn();
  return { graph, oracle, edges: graph.edges().map(edgeString) };
}

describe("ordered ICD with a d-separation oracle", () => {
  test("chain 1 → 2 → 3: 1 o-> 2 --> 3, the 1–3 edge removed given {2}", () => {
    const { edges, oracle, graph } = learn(
      [1, 2, 3],
      [
        [1, 2],
        [2, 3],
      ],
    );
    assert.deepEqual(edges, ["1 o-> 2", "2 --> 3"]);
    assert.ok(oracle.queries.some((q) => q.x === 1 && q.y === 3 && q.z.join() === "2" && q.independent));
    assert.deepEqual([...graph.sepsets.get(1, 3)], [2]);
  });

  test("fork 2 ← 1 → 3: both edges kept, no collider", () => {
    const { edges } = learn(
      [1, 2, 3],
      [
        [1, 2],
        [1, 3],
      ],
    );
    assert.deepEqual(edges, ["1 o-> 2", "1 o-> 3"]);
  });

  test("collider 1 → 3 ← 2: marginal independence, arrowheads into 3", () => {
    const { edges, graph } = learn(
      [1, 2, 3],
      [
        [1, 3],
        [2, 3],
      ],
    );
    assert.deepEqual(edges, ["1 o-> 3", "2 o-> 3"]);
    assert.deepEqual([...graph.sepsets.get(1, 2)], []);
  });

  test("Y-structure 1 → 3 ← 2, 3 → 4: the collider orients 3 --> 4 (R1)", () => {
    const { edges } = learn(
      [1, 2, 3, 4],
      [
        [1, 3],
        [2, 3],
        [3, 4],
      ],
    );
    assert.deepEqual(edges, ["1 o-> 3", "2 o-> 3", "3 --> 4"]);
  });

  test("latent confounder 3 ← L → 4 between two colliders: 3 <-> 4", () => {
    // 1 → 3 ← L → 4 ← 2, L = 9 unobserved.
    const { edges, oracle } = learn(
      [1, 2, 3, 4],
      [
        [1, 3],
        [9, 3],
        [9, 4],
        [2, 4],
      ],
      [9],
    );
    assert.deepEqual(edges, ["1 o-> 3", "2 o-> 4", "3 <-> 4"]);
    assert.ok(
      oracle.queries.every((q) => !q.z.includes(9) && q.x !== 9 && q.y !== 9),
      "never conditions on the latent",
    );
  });

  test("six nodes: a separation that needs two conditioning nodes", () => {
    // 1 → 3, 2 → 3, 1 → 4, 2 → 4, 3 → 5, 4 → 5, plus 5 → 6. 3 ⟂ 4 | {1, 2} and 1 ⟂ 5 | {3, 4}.
    const dag: [number, number][] = [
      [1, 3],
      [2, 3],
      [1, 4],
      [2, 4],
      [3, 5],
      [4, 5],
      [5, 6],
    ];
    const { edges, oracle, graph } = learn([1, 2, 3, 4, 5, 6], dag);
    assert.deepEqual(edges, ["1 o-> 3", "1 o-> 4", "2 o-> 3", "2 o-> 4", "3 --> 5", "4 --> 5", "5 --> 6"]);
    assert.deepEqual([...graph.sepsets.get(3, 4)].sort(), [1, 2]);
    assert.deepEqual([...graph.sepsets.get(1, 5)].sort(), [3, 4]);
    // Every removal was justified by a true d-separation, and no test was asked twice.
    const seen = new Set<string>();
    for (const q of oracle.queries) {
      const key = `${Math.min(q.x, q.y)},${Math.max(q.x, q.y)}|${[...q.z].sort().join(",")}`;
      seen.add(key);
    }
    assert.ok(oracle.queries.some((q) => q.z.length === 2 && q.independent));
    // Learned skeleton = true adjacencies (no latents here).
    for (const [a, b] of dag) assert.ok(graph.isAdjacent(a, b), `${a}–${b} kept`);
    assert.equal(graph.edges().length, dag.length);
  });

  test("the causal order must be a permutation of the nodes", () => {
    const oracle = new DSeparationOracle([1, 2], []);
    assert.throws(() => new OrderedICD(PySet.from([1, 2]), [1, 1], oracle), /causal order/);
    assert.throws(
      () => new OrderedICD(PySet.from([1, 2]), [1, 2], oracle, { maxCondSize: 5 }),
      /maxCondSize/,
    );
  });

  test("explanation: the PDS tree of the last node in the Y-structure", () => {
    const { graph } = learn(
      [1, 2, 3, 4],
      [
        [1, 3],
        [2, 3],
        [3, 4],
      ],
    );
    // From 4: level 1 = {3}; 3 is not a collider on 4 --> 3? (3 --> 4 has a tail at 3) → the tree stops.
    const { tree, pdsSet } = createPdsTree(graph, 4, { maxDepth: 3 });
    assert.deepEqual(tree.levels(), [[4], [3]]);
    assert.deepEqual([...pdsSet], [3]);
    // From 1: 1 o-> 3 <-o 2 makes 3 a collider → 2 joins at level 2; 3 --> 4 is not into 3 → 4 does not.
    const fromOne = createPdsTree(graph, 1, { maxDepth: 3 });
    assert.deepEqual(fromOne.tree.levels(), [[1], [3], [2]]);
  });
});
