/**
 * Possible-d-separation (PDS) trees (Rohekar et al., "Iterative Causal Discovery in the Possible Presence of
 * Latent Confounders and Selection Bias", NeurIPS 2021).
 *
 * A PDS tree rooted at node R records, breadth first, the paths along which a node can be "possibly
 * d-separating" for R: R's neighbours form level 1, and a path … U – V is extended by a neighbour W of V when
 * U, V, W is a triangle or V is a collider U *-> V <-* W. Every skeleton edge is walked at most once (in the
 * direction it was first reached), so a node may appear on several levels but a tree stays finite. Depth is
 * capped at `maxDepth`.
 *
 * Uses: ICD draws its conditioning sets of size r from the PDS tree of depth r (every member must be reachable
 * from the root through members only), and CLEANN's explanation of a token is the PDS set of its tree within
 * the search radius.
 */
import type { PAG } from "./pag.js";
import { combinations, PySet } from "./py-set.js";

export class PDSTree {
  readonly children: PDSTree[] = [];
  private readonly childIndex = new Map<number, number>();

  constructor(
    readonly origin: number,
    readonly depth = 0,
    /** Origins of the tree nodes strictly between the root and this node. */
    readonly via: readonly number[] = [],
  ) {}

  addChild(origin: number): PDSTree {
    if (this.childIndex.has(origin))
      throw new Error(`PDSTree: ${origin} is already a child of ${this.origin}`);
    const via = this.depth === 0 ? [] : [...this.via, this.origin];
    const child = new PDSTree(origin, this.depth + 1, via);
    this.childIndex.set(origin, this.children.length);
    this.children.push(child);
    return child;
  }

  /** Number of levels, root included (a lone root has depth 1). */
  maxDepth(): number {
    let m = 0;
    for (const c of this.children) m = Math.max(m, c.maxDepth());
    return m + 1;
  }

  /** Every tree node below this one, breadth first. */
  descendants(): PDSTree[] {
    const out: PDSTree[] = [];
    let level: PDSTree[] = this.children;
    while (level.length) {
      out.push(...level);
      level = level.flatMap((t) => t.children);
    }
    return out;
  }

  /** Shallowest level at which `node` occurs (Infinity when absent). */
  minimalDistance(node: number): number {
    let best = Number.POSITIVE_INFINITY;
    for (const t of this.descendants()) if (t.origin === node) best = Math.min(best, t.depth);
    return best;
  }

  /** Origins per level: level 0 is the root, level r the set of origins at depth r. */
  levels(): number[][] {
    const out: number[][] = [[this.origin]];
    let level: PDSTree[] = this.children;
    while (level.length) {
      out.push([...new Set(level.map((t) => t.origin))].sort((a, b) => a - b));
      level = level.flatMap((t) => t.children);
    }
    return out;
  }

  /**
   * ICD-Sep condition 2-b: every member of the set has an occurrence in the tree reached from the root
   * through members of the set only.
   */
  isLegalCondSet(set: readonly number[]): boolean {
    const members = new Set(set);
    const occurrences = this.occurrenceIndex();
    return set.every((v) => (occurrences.get(v) ?? []).some((t) => t.via.every((u) => members.has(u))));
  }

  private occ: Map<number, PDSTree[]> | null = null;

  private occurrenceIndex(): Map<number, PDSTree[]> {
    if (!this.occ) {
      this.occ = new Map();
      for (const t of this.descendants()) {
        const list = this.occ.get(t.origin);
        if (list) list.push(t);
        else this.occ.set(t.origin, [t]);
      }
    }
    return this.occ;
  }

  /**
   * All legal conditioning sets of `size` drawn from `nodes` (in the order `combinations` yields them over
   * the set's iteration order), each with the sum of its members' minimal distances to the root.
   * Not sorted; callers sort stably by distance.
   */
  subsets(nodes: PySet, size: number): { set: number[]; dist: number }[] {
    const items = nodes.toArray();
    const dist = new Map(items.map((v) => [v, this.minimalDistance(v)]));
    const out: { set: number[]; dist: number }[] = [];
    for (const s of combinations(items, size)) {
      if (!this.isLegalCondSet(s)) continue;
      let d = 0;
      for (const v of s) d += dist.get(v)!;
      out.push({ set: s, dist: d });
    }
    return out;
  }
}

export interface PdsTreeResult {
  tree: PDSTree;
  /** Every node of the tree except the root (a set: a node reached on several paths counts once). */
  pdsSet: PySet;
}

/**
 * Build the PDS tree rooted at `root` over the skeleton of `pag` restricted to `enNodes` (default: all nodes),
 * at most `maxDepth` levels below the root (default: number of nodes − 1).
 */
export function createPdsTree(
  pag: PAG,
  root: number,
  opts: { enNodes?: PySet; maxDepth?: number } = {},
): PdsTreeResult {
  const en = opts.enNodes ?? pag.nodes;
  const maxDepth = opts.maxDepth ?? pag.nodes.size - 1;
  // A private copy of the skeleton: walked edges are removed from it.
  const skelNodes = en.copy();
  const ids = skelNodes.toArray();
  const local = new Map(ids.map((v, i) => [v, i]));
  const k = ids.length;
  const adj = new Uint8Array(k * k);
  for (let a = 0; a < k; a++) {
    for (let b = a + 1; b < k; b++) {
      if (pag.isAdjacent(ids[a], ids[b])) {
        adj[a * k + b] = 1;
        adj[b * k + a] = 1;
      }
    }
  }
  const order = new Map<number, number[]>();
  const neighbours = (v: number): number[] => {
    let cand = order.get(v);
    if (!cand) {
      cand = skelNodes.without(v).toArray();
      order.set(v, cand);
    }
    const lv = local.get(v)!;
    return cand.filter((u) => adj[lv * k + local.get(u)!] === 1);
  };
  const unlink = (a: number, b: number) => {
    const la = local.get(a)!;
    const lb = local.get(b)!;
    adj[la * k + lb] = 0;
    adj[lb * k + la] = 0;
  };

  const tree = new PDSTree(root);
  const pdsNodes: number[] = [];
  const queue: { from: number; node: PDSTree }[] = [];
  if (local.has(root)) {
    const first = neighbours(root);
    for (const v of first) unlink(root, v);
    for (const v of first) {
      pdsNodes.push(v);
      queue.push({ from: root, node: tree.addChild(v) });
    }
  }
  for (let q = 0; q < queue.length; q++) {
    const { from, node } = queue[q];
    if (node.depth >= maxDepth) continue;
    const mid = node.origin;
    for (const w of neighbours(mid)) {
      if (!pag.isPossibleCollider(from, mid, w)) continue;
      unlink(mid, w);
      pdsNodes.push(w);
      queue.push({ from: mid, node: node.addChild(w) });
    }
  }
  const pdsSet = PySet.from(pdsNodes);
  pdsSet.discard(root);
  return { tree, pdsSet };
}
