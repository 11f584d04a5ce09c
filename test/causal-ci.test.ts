/** CI-test building blocks: erf/erfc, Fisher z, partial correlation, row correlation, the d-separation oracle. */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  CorrelationMatrix,
  DSeparationOracle,
  fisherZPValue,
  ParCorrTest,
  partialCorrelation,
  rowCorrelation,
} from "../src/interpret/causal/ci-test.js";
import { erf, erfc } from "../src/tensor/ops.js";

function close(a: number, b: number, rel: number, msg?: string) {
  assert.ok(Math.abs(a - b) <= rel * Math.max(Math.abs(a), Math.abs(b)), `${msg ?? ""} ${a} vs ${b}`);
}

/** ∫_x^∞ 2/√π e^{−t²} dt by composite Simpson on [x, x + 12]. */
function erfcByQuadrature(x: number): number {
  const n = 20000;
  const h = 12 / n;
  let s = 0;
  for (let i = 0; i <= n; i++) {
    const t = x + i * h;
    const f = Math.exp(-t * t);
    s += (i === 0 || i === n ? 1 : i % 2 ? 4 : 2) * f;
  }
  return ((2 / Math.sqrt(Math.PI)) * s * h) / 3;
}

describe("erfc", () => {
  test("matches numerical integration across both branches", () => {
    for (const x of [0, 0.1, 0.7, 1.5, 2.4, 2.6, 3.1, 4.4, 6])
      close(erfc(x), erfcByQuadrature(x), 1e-9, `x=${x}`);
  });
  test("known values and symmetry", () => {
    assert.equal(erfc(0), 1);
    close(erfc(1), 0.157299207050285, 1e-13);
    close(erfc(-0.8), 2 - erfc(0.8), 1e-15);
    assert.equal(erfc(40), 0);
    assert.ok(Number.isNaN(erfc(Number.NaN)));
  });
  test("erf is its complement, odd, and saturates (the one erf behind GELU and the p-values)", () => {
    for (const x of [0, 0.3, 1.2, 2.49, 2.5, 3.7, 5.9, 7]) {
      close(erf(x) + erfc(x), 1, 1e-15, `x=${x}`);
      assert.ok(erf(-x) === -erf(x), `odd at ${x}`);
    }
    close(erf(1), 0.8427007929497149, 1e-15);
    assert.equal(erf(8), 1);
  });
});

describe("Fisher z", () => {
  test("the 5 % two-sided critical value gives p = 0.05", () => {
    const n = 128;
    for (const k of [0, 1, 5]) {
      const r = Math.tanh(1.959963984540054 / Math.sqrt(n - k - 3));
      close(fisherZPValue(r, n, k), 0.05, 1e-9, `k=${k}`);
      close(fisherZPValue(-r, n, k), 0.05, 1e-9);
    }
  });
  test("r = 0 gives p = 1, |r| = 1 gives p = 0, no degrees of freedom gives NaN", () => {
    assert.equal(fisherZPValue(0, 128, 2), 1);
    assert.equal(fisherZPValue(1, 128, 2), 0);
    assert.equal(fisherZPValue(-1, 128, 2), 0);
    assert.ok(Number.isNaN(fisherZPValue(0.3, 10, 7)));
  });
});

/** Correlation matrix of random data with a planted structure. */
function randomCorrelation(nodes: number[], seed: number): CorrelationMatrix {
  let s = seed;
  const rand = () => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return s / 2147483648 - 0.5;
  };
  const cols = 40;
  const rows = nodes.map(() => Array.from({ length: cols }, rand));
  for (let i = 1; i < rows.length; i++) for (let c = 0; c < cols; c++) rows[i][c] += 0.6 * rows[i - 1][c];
  const S = nodes.length;
  // rowCorrelation works on a square matrix; pad the columns.
  const size = Math.max(S, cols);
  const a = new Float32Array(size * size);
  for (let i = 0; i < rows.length; i++) for (let c = 0; c < cols; c++) a[i * size + c] = rows[i][c];
  const m = rowCorrelation(
    a,
    size,
    nodes.map((_, i) => i),
  );
  return new CorrelationMatrix(nodes, m.values);
}

describe("partial correlation", () => {
  const nodes = [10, 11, 12, 13, 14];
  const c = randomCorrelation(nodes, 7);

  test("one conditioning node: closed form equals residual correlation", () => {
    const [x, y, z] = [10, 12, 11];
    const rxy = c.at(x, y);
    const rxz = c.at(x, z);
    const ryz = c.at(y, z);
    // Residual covariances after regressing on z (unit variances).
    const vx = 1 - rxz * rxz;
    const vy = 1 - ryz * ryz;
    const cxy = rxy - rxz * ryz;
    close(partialCorrelation(c, x, y, [z]), cxy / Math.sqrt(vx * vy), 1e-12);
  });

  test("two conditioning nodes: pseudo-inverse path equals residual correlation", () => {
    const [x, y, z1, z2] = [10, 14, 11, 13];
    const a = c.at(z1, z1);
    const b = c.at(z1, z2);
    const d = c.at(z2, z2);
    const det = a * d - b * b;
    const inv = [d / det, -b / det, -b / det, a / det];
    const proj = (u: number, v: number) => {
      const cu = [c.at(u, z1), c.at(u, z2)];
      const cv = [c.at(v, z1), c.at(v, z2)];
      return cu[0] * (inv[0] * cv[0] + inv[1] * cv[1]) + cu[1] * (inv[2] * cv[0] + inv[3] * cv[1]);
    };
    const rxx = 1 - proj(x, x);
    const ryy = 1 - proj(y, y);
    const rxy = c.at(x, y) - proj(x, y);
    close(partialCorrelation(c, x, y, [z1, z2]), rxy / Math.sqrt(rxx * ryy), 1e-10);
    // The order of the conditioning set does not matter.
    close(partialCorrelation(c, x, y, [z2, z1]), partialCorrelation(c, x, y, [z1, z2]), 1e-12);
  });

  test("a duplicated conditioning variable (singular matrix) stays finite", () => {
    const dup = new CorrelationMatrix(
      [1, 2, 3, 4],
      Float64Array.from([1, 0.5, 0.3, 0.3, 0.5, 1, 0.4, 0.4, 0.3, 0.4, 1, 1, 0.3, 0.4, 1, 1]),
    );
    const r = partialCorrelation(dup, 1, 2, [3, 4]);
    assert.ok(Number.isFinite(r));
    close(r, partialCorrelation(dup, 1, 2, [3]), 1e-9);
  });
});

describe("row correlation", () => {
  test("corr of rows (1,0) and (1,1) is 1/√2", () => {
    const m = rowCorrelation(Float32Array.from([1, 0, 1, 1]), 2, [0, 1]);
    close(m.at(0, 1), Math.SQRT1_2, 1e-15);
    close(m.at(1, 1), 1, 1e-15);
  });
  test("a zero row is rejected", () => {
    assert.throws(() => rowCorrelation(Float32Array.from([1, 0, 0, 0]), 2, [0, 1]), /zero norm/);
  });
});

describe("ParCorrTest", () => {
  test("caches per unordered pair and sorted set, and counts computed tests", () => {
    const c = randomCorrelation([1, 2, 3, 4], 3);
    const t = new ParCorrTest(c, 128, 1e-5);
    const first = t.condIndep(1, 3, [2, 4]);
    assert.equal(t.condIndep(3, 1, [4, 2]), first);
    assert.equal(t.stats.nTests, 1);
    t.condIndep(1, 2, []);
    assert.equal(t.stats.nTests, 2);
    assert.deepEqual(
      Array.from(t.stats.perSize, (v) => v ?? 0),
      [1, 0, 1],
    );
    assert.ok(t.stats.closest !== null);
    // Decision = p > α.
    const p = t.pValue(1, 2, []);
    assert.equal(t.condIndep(1, 2, []), p > 1e-5);
  });
});

describe("d-separation oracle", () => {
  test("chain a → b → c", () => {
    const o = new DSeparationOracle(
      [1, 2, 3],
      [
        [1, 2],
        [2, 3],
      ],
    );
    assert.equal(o.condIndep(1, 3, []), false);
    assert.equal(o.condIndep(1, 3, [2]), true);
  });
  test("fork a ← b → c", () => {
    const o = new DSeparationOracle(
      [1, 2, 3],
      [
        [2, 1],
        [2, 3],
      ],
    );
    assert.equal(o.condIndep(1, 3, []), false);
    assert.equal(o.condIndep(1, 3, [2]), true);
  });
  test("collider a → c ← b, opened by c or its descendant d", () => {
    const o = new DSeparationOracle(
      [1, 2, 3, 4],
      [
        [1, 3],
        [2, 3],
        [3, 4],
      ],
    );
    assert.equal(o.condIndep(1, 2, []), true);
    assert.equal(o.condIndep(1, 2, [3]), false);
    assert.equal(o.condIndep(1, 2, [4]), false);
    assert.equal(o.condIndep(1, 4, [3]), true);
  });
  test("a latent confounder keeps its children dependent", () => {
    const o = new DSeparationOracle(
      [1, 2, 9],
      [
        [9, 1],
        [9, 2],
      ],
    );
    assert.equal(o.condIndep(1, 2, []), false);
    assert.equal(o.condIndep(1, 2, [9]), true);
  });
});
