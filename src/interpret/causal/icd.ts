/**
 * Ordered ICD: causal structure learning with latent confounders when a causal order of the observed nodes
 * is known (no node is an ancestor of a node before it), after Rohekar et al. (NeurIPS 2018/2021) as used by
 * CLEANN for tokens, whose order is their position.
 *
 * Start from the complete graph. Round r = 0, 1, 2, … removes the edge between a node B and an earlier node A
 * when a CI test finds them independent given a set of r nodes:
 * - r = 0: the empty set;
 * - r = 1: each single earlier neighbour of B;
 * - r ≥ 2: the r-subsets of B's PDS tree of depth r over B and the nodes before it (nearest first), whose
 *   members are possible ancestors of A or of B (ICD-Sep conditions).
 * After every round the graph is re-oriented from scratch: every edge starts as A o-> B (the order forbids
 * B → A), unshielded colliders come from the separating sets (R0), then R1–R4; after the last round also
 * R8–R10 (tail completeness) and, when selection bias is allowed, R5–R7. An edge is settled once it is
 * removed, or once no legal conditioning set of the current size exists for it.
 */
import type { CITest } from "./ci-test.js";
import { ARROW, CIRCLE, type MarkOrder, PAG, SepSets } from "./pag.js";
import { createPdsTree } from "./pds-tree.js";
import { PySet } from "./py-set.js";

export interface OrderedIcdOptions {
  /** Allow selection bias (orientation rules R5–R7). Default false (CLEANN's setting). */
  selectionBias?: boolean;
  /** Apply R8–R10 at the end. Default true. */
  tailCompleteness?: boolean;
  /** Largest conditioning-set size (default: number of nodes − 2). */
  maxCondSize?: number;
  /** See {@link PAG}. */
  markOrder?: MarkOrder;
}

export class OrderedICD {
  readonly graph: PAG;
  readonly sepsets = new SepSets();
  readonly order: readonly number[];
  private readonly done: Uint8Array;
  private readonly opts: Required<Omit<OrderedIcdOptions, "maxCondSize" | "markOrder">> & {
    maxCondSize?: number;
  };

  /**
   * @param nodes the node set; its iteration order drives tie-breaking (build it as the reference does,
   *   e.g. `PySet.from(tokenList)`).
   * @param order the causal order (ancestors first); a permutation of `nodes`.
   */
  constructor(
    nodes: PySet,
    order: readonly number[],
    readonly ci: CITest,
    opts: OrderedIcdOptions = {},
  ) {
    if (
      order.length !== nodes.size ||
      new Set(order).size !== order.length ||
      !order.every((v) => nodes.has(v))
    ) {
      throw new Error("OrderedICD: the causal order must list every node exactly once");
    }
    const n = order.length;
    if (opts.maxCondSize !== undefined && (opts.maxCondSize < 0 || opts.maxCondSize > n - 2)) {
      throw new Error(`OrderedICD: maxCondSize must be in [0, ${Math.max(0, n - 2)}]`);
    }
    this.order = [...order];
    this.opts = { selectionBias: false, tailCompleteness: true, ...opts };
    this.graph = new PAG(nodes, { markOrder: opts.markOrder });
    this.graph.sepsets = this.sepsets;
    this.graph.makeComplete();
    this.done = new Uint8Array(n * n);
  }

  private isDone(base: number, anc: number): boolean {
    return this.done[base * this.order.length + anc] === 1;
  }

  private setDone(base: number, anc: number, v: boolean): void {
    this.done[base * this.order.length + anc] = v ? 1 : 0;
  }

  /** Learn the PAG (the reference's "global" schedule: one conditioning-set size at a time for all nodes). */
  learn(): PAG {
    const n = this.order.length;
    for (let b = 1; b < n; b++) this.learnEmptySet(b);
    this.orient(true);
    for (let b = 2; b < n; b++) this.learnSingletons(b);
    this.orient(true);
    const maxCond = (this.opts.maxCondSize ?? n - 2) + 1;
    let allDone = true;
    for (let r = 2; r < maxCond; r++) {
      for (let b = r + 1; b < n; b++) allDone = this.learnSize(r, b) && allDone;
      if (allDone) break;
      this.orient(true);
    }
    this.orient(false);
    return this.graph;
  }

  /** Reset every edge to A o-> B (A before B), then orient. `anytime` stops after R1–R4. */
  orient(anytime: boolean): void {
    const g = this.graph;
    const order = this.order;
    for (let b = 1; b < order.length; b++) {
      for (let a = 0; a < b; a++) {
        if (!g.isAdjacent(order[a], order[b])) continue;
        g.setMark(order[a], order[b], ARROW);
        g.setMark(order[b], order[a], CIRCLE);
      }
    }
    g.orientVStructures(this.sepsets);
    g.orientMaximally([1, 2, 3, 4]);
    if (!anytime) {
      if (this.opts.selectionBias) g.orientMaximally([5, 6, 7]);
      if (this.opts.tailCompleteness) g.orientMaximally([8, 9, 10]);
    }
  }

  private removeEdge(a: number, b: number, z: readonly number[] | null): void {
    this.graph.removeEdge(this.order[a], this.order[b]);
    if (z) this.sepsets.set(this.order[a], this.order[b], z);
    this.setDone(b, a, true);
  }

  private learnEmptySet(b: number): void {
    const base = this.order[b];
    for (let a = 0; a < b; a++) {
      if (this.isDone(b, a)) continue;
      if (this.ci.condIndep(this.order[a], base, [])) this.removeEdge(a, b, null);
    }
  }

  private learnSingletons(b: number): void {
    const g = this.graph;
    const base = this.order[b];
    const earlier = PySet.from(this.order.slice(0, b));
    const pos = new Map(this.order.map((v, i) => [v, i]));
    for (const anc of earlier.toArray()) {
      const a = pos.get(anc)!;
      if (!g.isAdjacent(anc, base) || this.isDone(b, a)) continue;
      for (const z of g.adjacent(base, earlier.without(anc))) {
        if (this.ci.condIndep(anc, base, [z])) {
          this.removeEdge(a, b, [z]);
          break;
        }
      }
    }
  }

  /** One node, conditioning sets of size r ≥ 2. Returns true when nothing is left to test for it. */
  private learnSize(r: number, b: number): boolean {
    const g = this.graph;
    const order = this.order;
    const base = order[b];
    let pending = false;
    for (let a = 0; a < b; a++) if (!this.isDone(b, a)) pending = true;
    if (!pending) return true;
    const en = PySet.from(order.slice(0, b + 1));
    const { tree, pdsSet } = createPdsTree(g, base, { enNodes: en, maxDepth: r });
    const candidates = tree.subsets(pdsSet, r).sort((x, y) => x.dist - y.dist);
    let allDone = true;
    for (let a = 0; a < b; a++) {
      if (this.isDone(b, a)) continue;
      this.setDone(b, a, true); // stays settled when no legal conditioning set exists
      const anc = order[a];
      if (!g.isAdjacent(anc, base)) continue;
      let ancOfAnc: Set<number> | null = null;
      let ancOfBase: Set<number> | null = null;
      for (const { set } of candidates) {
        if (set.includes(anc)) continue;
        ancOfAnc ??= g.possibleAncestorsOf(anc, PySet.from(order.slice(0, a + 1)));
        ancOfBase ??= g.possibleAncestorsOf(base, PySet.from(order.slice(0, b + 1)));
        const aa = ancOfAnc;
        const ab = ancOfBase;
        if (!set.every((z) => aa.has(z) || ab.has(z))) continue;
        if (this.ci.condIndep(anc, base, set)) {
          this.removeEdge(a, b, set);
          break;
        }
        this.setDone(b, a, false);
        allDone = false;
      }
    }
    return allDone;
  }
}
