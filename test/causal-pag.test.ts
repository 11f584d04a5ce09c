/** PAG orientation rules and PDS trees on hand-made graphs. */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { ARROW, CIRCLE, edgeString, type Mark, PAG, SepSets, TAIL } from "../src/interpret/causal/pag.js";
import { createPdsTree } from "../src/interpret/causal/pds-tree.js";
import { PySet } from "../src/interpret/causal/py-set.js";

type EdgeSpec = [number, Mark, Mark, number]; // i, mark at i, mark at j, j

function pag(nodes: number[], edges: EdgeSpec[]): PAG {
  const g = new PAG(PySet.from(nodes));
  for (const [i, mi, mj, j] of edges) g.addEdge(i, j, mi, mj);
  return g;
}

const edges = (g: PAG) => g.edges().map(edgeString);

describe("orientation rules", () => {
  test("R0: unshielded collider unless the middle node separates", () => {
    const g = pag(
      [1, 2, 3],
      [
        [1, CIRCLE, CIRCLE, 2],
        [2, CIRCLE, CIRCLE, 3],
      ],
    );
    const sep = new SepSets();
    sep.set(1, 3, [2]);
    g.orientVStructures(sep);
    assert.deepEqual(edges(g), ["1 o-o 2", "2 o-o 3"]);
    g.orientVStructures(new SepSets());
    assert.deepEqual(edges(g), ["1 o-> 2", "2 <-o 3"]);
  });

  test("R1: a *-> b o-o c, a and c apart ⇒ b --> c", () => {
    const g = pag(
      [1, 2, 3],
      [
        [1, CIRCLE, ARROW, 2],
        [2, CIRCLE, CIRCLE, 3],
      ],
    );
    assert.equal(g.rule1(), true);
    assert.deepEqual(edges(g), ["1 o-> 2", "2 --> 3"]);
    assert.equal(g.rule1(), false);
  });

  test("R1 does not fire when a and c are adjacent", () => {
    const g = pag(
      [1, 2, 3],
      [
        [1, CIRCLE, ARROW, 2],
        [2, CIRCLE, CIRCLE, 3],
        [1, CIRCLE, CIRCLE, 3],
      ],
    );
    assert.equal(g.rule1(), false);
  });

  test("R2: a --> b *-> c and a *-o c ⇒ a *-> c", () => {
    const g = pag(
      [1, 2, 3],
      [
        [1, TAIL, ARROW, 2],
        [2, ARROW, ARROW, 3],
        [1, CIRCLE, CIRCLE, 3],
      ],
    );
    assert.equal(g.rule2(), true);
    assert.deepEqual(edges(g), ["1 --> 2", "1 o-> 3", "2 <-> 3"]);
  });

  test("R3: a *-> b <-* c, a *-o d o-* c, d *-o b ⇒ d *-> b", () => {
    // a=1, c=3, b=4, d=2
    const g = pag(
      [1, 2, 3, 4],
      [
        [1, CIRCLE, ARROW, 4],
        [3, CIRCLE, ARROW, 4],
        [1, CIRCLE, CIRCLE, 2],
        [3, CIRCLE, CIRCLE, 2],
        [2, CIRCLE, CIRCLE, 4],
      ],
    );
    assert.equal(g.rule3(), true);
    assert.equal(g.markAt(4, 2), ARROW);
    assert.equal(g.markAt(2, 4), CIRCLE);
  });

  for (const inSepset of [true, false]) {
    test(`R4: discriminating path, middle node ${inSepset ? "in" : "not in"} sepset(d, c)`, () => {
      // d=1 *-> a=2 <-> b=3 o-o c=4, a --> c, d and c apart.
      const g = pag(
        [1, 2, 3, 4],
        [
          [1, CIRCLE, ARROW, 2],
          [2, ARROW, ARROW, 3],
          [3, CIRCLE, CIRCLE, 4],
          [2, TAIL, ARROW, 4],
        ],
      );
      const sep = new SepSets();
      sep.set(1, 4, inSepset ? [2, 3] : [2]);
      g.sepsets = sep;
      assert.equal(g.findDiscriminatingPath(2, 3, 4), 1);
      assert.equal(g.rule4(), true);
      assert.equal(
        edges(g).find((e) => e.startsWith("3 ")),
        inSepset ? "3 --> 4" : "3 <-> 4",
      );
      if (!inSepset) assert.equal(edgeString(g.edges().find((e) => e.i === 2 && e.j === 3)!), "2 <-> 3");
    });
  }

  test("R8: a --> b --> c and a o-> c ⇒ a --> c", () => {
    const g = pag(
      [1, 2, 3],
      [
        [1, TAIL, ARROW, 2],
        [2, TAIL, ARROW, 3],
        [1, CIRCLE, ARROW, 3],
      ],
    );
    assert.equal(g.rule8(), true);
    assert.equal(g.markAt(1, 3), TAIL);
  });

  test("R9: a o-> c with an uncovered possibly directed path a o-> b --> d --> c ⇒ a --> c", () => {
    const build = (shield: boolean) =>
      pag(
        [1, 2, 3, 4],
        [
          [1, CIRCLE, ARROW, 4],
          [1, CIRCLE, ARROW, 2],
          [2, TAIL, ARROW, 3],
          [3, TAIL, ARROW, 4],
          ...(shield ? ([[1, CIRCLE, CIRCLE, 3]] as EdgeSpec[]) : []),
        ],
      );
    const g = build(false);
    assert.equal(g.rule9(), true);
    assert.equal(g.markAt(1, 4), TAIL);
    // With a–d adjacent the path is covered: no change.
    const h = build(true);
    assert.equal(h.rule9(), false);
  });

  test("possible ancestors follow possibly directed paths only", () => {
    // 1 o-> 2 --> 3 <-> 4
    const g = pag(
      [1, 2, 3, 4],
      [
        [1, CIRCLE, ARROW, 2],
        [2, TAIL, ARROW, 3],
        [3, ARROW, ARROW, 4],
      ],
    );
    assert.deepEqual([...g.possibleAncestorsOf(3)].sort(), [1, 2]);
    assert.equal(g.isPossibleAncestor(4, 3), false);
    assert.equal(g.isPossibleAncestor(3, 1), false);
    // Restricted to {1, 3}: the path through 2 is not allowed.
    assert.equal(g.isPossibleAncestor(1, 3, PySet.from([1, 3])), false);
  });
});

describe("PDS tree", () => {
  test("a non-collider, non-triangle path is not extended", () => {
    // 1 o-o 2 o-o 3: 2 is not a collider and 1, 3 are apart.
    const g = pag(
      [1, 2, 3],
      [
        [1, CIRCLE, CIRCLE, 2],
        [2, CIRCLE, CIRCLE, 3],
      ],
    );
    const { tree, pdsSet } = createPdsTree(g, 1);
    assert.deepEqual(tree.levels(), [[1], [2]]);
    assert.deepEqual([...pdsSet], [2]);
  });

  test("a collider extends the path", () => {
    // 1 o-> 2 <-o 3 o-o 4
    const g = pag(
      [1, 2, 3, 4],
      [
        [1, CIRCLE, ARROW, 2],
        [3, CIRCLE, ARROW, 2],
        [3, CIRCLE, CIRCLE, 4],
      ],
    );
    const { tree, pdsSet } = createPdsTree(g, 1);
    // 2 is a collider on 1 *-> 2 <-* 3 → 3 at level 2; 3 is not a collider on 2 – 3 – 4 → stop.
    assert.deepEqual(tree.levels(), [[1], [2], [3]]);
    assert.deepEqual(new Set(pdsSet), new Set([2, 3]));
    assert.equal(tree.maxDepth(), 3);
    assert.deepEqual(createPdsTree(g, 1, { maxDepth: 1 }).tree.levels(), [[1], [2]]);
  });

  test("a triangle extends the path; each skeleton edge is walked once", () => {
    // Triangle 1, 2, 3 (all o-o): from root 1, both 2 and 3 are level 1; the edge 2–3 is walked once, from the
    // neighbour expanded first, so exactly one of 2, 3 re-appears at level 2.
    const g = pag(
      [1, 2, 3],
      [
        [1, CIRCLE, CIRCLE, 2],
        [2, CIRCLE, CIRCLE, 3],
        [1, CIRCLE, CIRCLE, 3],
      ],
    );
    const { tree } = createPdsTree(g, 1);
    const levels = tree.levels();
    assert.deepEqual(levels.slice(0, 2), [[1], [2, 3]]);
    assert.equal(levels[2].length, 1);
    assert.equal(levels.length, 3);
  });

  test("legal conditioning sets need a path through members", () => {
    // 1 o-> 2 <-o 3 o-> 4 <-o 5 (chain of colliders): 3 is reachable only through 2.
    const g = pag(
      [1, 2, 3, 4, 5],
      [
        [1, CIRCLE, ARROW, 2],
        [3, CIRCLE, ARROW, 2],
        [3, CIRCLE, ARROW, 4],
        [5, CIRCLE, ARROW, 4],
      ],
    );
    const { tree, pdsSet } = createPdsTree(g, 1);
    assert.equal(tree.isLegalCondSet([2, 3]), true);
    assert.equal(tree.isLegalCondSet([3]), false);
    assert.equal(tree.minimalDistance(3), 2);
    const subsets = tree.subsets(pdsSet, 2).map((s) => [...s.set].sort().join(","));
    assert.deepEqual(subsets.sort(), ["2,3"]);
  });
});
