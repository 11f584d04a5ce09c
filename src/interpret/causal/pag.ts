/**
 * Partial ancestral graph (PAG) and the FCI orientation rules (Zhang 2008), as the reference learner uses
 * them: R0 (unshielded colliders from separating sets), R1–R4 (arrowhead completeness), R5–R7 (selection
 * bias) and R8–R10 (tail completeness).
 *
 * Edge marks: every edge u–v carries a mark at each end, one of circle (o), arrowhead (>) or tail (-).
 * `markAt(v, u)` is the mark at v on the edge u–v, so u *-> v means markAt(v, u) = ARROW.
 *
 * Besides a dense mark matrix, each node keeps, per mark kind, a {@link PySet} of the neighbours whose edge
 * has that mark at the node. These sets exist for their iteration order only: the rules below visit nodes
 * and neighbours in exactly the order the reference implementation does, so that when rules compete (finite
 * sample data is not always faithful) the same rule wins. See py-set.ts.
 */
import { combinations, PySet } from "./py-set.js";

export const NONE = 0;
export const CIRCLE = 1;
export const ARROW = 2;
export const TAIL = 3;
export type Mark = typeof CIRCLE | typeof ARROW | typeof TAIL;
export type MarkName = "circle" | "arrow" | "tail";

export const MARK_NAMES: Record<Mark, MarkName> = { [CIRCLE]: "circle", [ARROW]: "arrow", [TAIL]: "tail" };

/** Order in which the per-mark neighbour sets are merged when listing all neighbours of a node. */
export type MarkOrder = readonly [Mark, Mark, Mark];
export const DEFAULT_MARK_ORDER: MarkOrder = [CIRCLE, ARROW, TAIL];

/** Separating sets found by the CI tests, per unordered pair. */
export class SepSets {
  private readonly sets = new Map<string, ReadonlySet<number>>();
  private static readonly EMPTY: ReadonlySet<number> = new Set();

  private static key(a: number, b: number): string {
    return a < b ? `${a},${b}` : `${b},${a}`;
  }

  set(a: number, b: number, z: Iterable<number>): void {
    this.sets.set(SepSets.key(a, b), new Set(z));
  }

  get(a: number, b: number): ReadonlySet<number> {
    return this.sets.get(SepSets.key(a, b)) ?? SepSets.EMPTY;
  }
}

export interface PagEdge {
  i: number;
  j: number;
  markAtI: Mark;
  markAtJ: Mark;
}

type Rule = () => boolean;

export class PAG {
  /** The node set (iteration order matters; see the module comment). Never mutated. */
  readonly nodes: PySet;
  readonly markOrder: MarkOrder;
  /** Used by R4 (discriminating paths). */
  sepsets: SepSets = new SepSets();
  private readonly n: number;
  private readonly local: Int32Array;
  private readonly marks: Uint8Array;
  private readonly byMark: PySet[];
  private readonly rules: Record<number, Rule>;

  constructor(nodes: PySet, opts: { markOrder?: MarkOrder } = {}) {
    this.nodes = nodes;
    this.markOrder = opts.markOrder ?? DEFAULT_MARK_ORDER;
    const list = nodes.toArray();
    this.n = list.length;
    const maxId = list.reduce((m, v) => Math.max(m, v), 0);
    this.local = new Int32Array(maxId + 1).fill(-1);
    list.forEach((v, i) => {
      this.local[v] = i;
    });
    this.marks = new Uint8Array(this.n * this.n);
    this.byMark = Array.from({ length: this.n * 4 }, () => new PySet());
    this.rules = {
      1: () => this.rule1(),
      2: () => this.rule2(),
      3: () => this.rule3(),
      4: () => this.rule4(),
      5: () => this.rule5(),
      6: () => this.rule6(),
      7: () => this.rule7(),
      8: () => this.rule8(),
      9: () => this.rule9(),
      10: () => this.rule10(),
    };
  }

  private li(v: number): number {
    const i = v < this.local.length ? this.local[v] : -1;
    if (i < 0) throw new Error(`PAG: ${v} is not a node`);
    return i;
  }

  // --- queries -------------------------------------------------------------------------------------------

  hasNode(v: number): boolean {
    return v >= 0 && v < this.local.length && this.local[v] >= 0;
  }

  /** Mark at `at` on the edge other–at (NONE when not adjacent). */
  markAt(at: number, other: number): Mark | typeof NONE {
    return this.marks[this.li(at) * this.n + this.li(other)] as Mark | typeof NONE;
  }

  isAdjacent(a: number, b: number): boolean {
    return this.marks[this.li(a) * this.n + this.li(b)] !== NONE;
  }

  /** Neighbours of `node` whose edge has `mark` at `node` (live set: do not mutate). */
  into(node: number, mark: Mark): PySet {
    return this.byMark[this.li(node) * 4 + mark];
  }

  /** Is there an edge i–j with `atI` at i and `atJ` at j? */
  isEdge(i: number, j: number, atI: Mark, atJ: Mark): boolean {
    return this.markAt(i, j) === atI && this.markAt(j, i) === atJ;
  }

  /** All neighbours of a node (merged per mark kind in `markOrder`), optionally intersected with a pool. */
  adjacent(node: number, pool?: PySet): PySet {
    const s = new PySet();
    for (const m of this.markOrder) s.update(this.into(node, m));
    return pool ? s.intersect(pool) : s;
  }

  /** x *-> middle <-* y. */
  isCollider(middle: number, x: number, y: number): boolean {
    return this.markAt(middle, x) === ARROW && this.markAt(middle, y) === ARROW;
  }

  /** x *-* middle *-* y is a sub-path of a possible-d-sep path: a triangle, or middle a collider. */
  isPossibleCollider(x: number, middle: number, y: number): boolean {
    if (x === y || !this.isAdjacent(x, middle) || !this.isAdjacent(middle, y)) return false;
    return this.isAdjacent(x, y) || this.isCollider(middle, x, y);
  }

  /** p can be a parent of c: adjacent, no arrowhead at p, no tail at c. */
  isPossibleParent(p: number, c: number): boolean {
    if (p === c || !this.isAdjacent(p, c)) return false;
    return this.markAt(c, p) !== TAIL && this.markAt(p, c) !== ARROW;
  }

  /** p --> c. */
  isParent(p: number, c: number): boolean {
    return this.markAt(c, p) === ARROW && this.markAt(p, c) === TAIL;
  }

  findParents(child: number): PySet {
    const out = new PySet();
    for (const p of this.into(child, ARROW).toArray()) if (this.markAt(p, child) === TAIL) out.add(p);
    return out;
  }

  findPossibleChildren(parent: number, en?: PySet): PySet {
    const pool = en ?? this.nodes.without(parent);
    const out = new PySet();
    for (const v of pool) if (this.isPossibleParent(parent, v)) out.add(v);
    return out;
  }

  findPossibleParents(child: number, en?: PySet): PySet {
    const pool = en ?? this.nodes.without(child);
    const out = new PySet();
    for (const v of pool) if (this.isPossibleParent(v, child)) out.add(v);
    return out;
  }

  /**
   * Nodes from which `target` is reachable along a possibly directed path (each node a possible parent of
   * the next) whose nodes after the first all lie in `en` (default: all nodes); `target` must be in `en`.
   */
  possibleAncestorsOf(target: number, en?: PySet): Set<number> {
    const out = new Set<number>();
    if (en && !en.has(target)) return out;
    const list = this.nodeList();
    const n = this.n;
    const step = new Uint8Array(n);
    const t = this.li(target);
    step[t] = 1;
    const queue = [t];
    while (queue.length) {
      const v = queue.pop()!;
      for (let p = 0; p < n; p++) {
        // p is a possible parent of v: adjacent, no tail at v, no arrowhead at p.
        const atV = this.marks[v * n + p];
        if (atV === NONE || atV === TAIL || this.marks[p * n + v] === ARROW) continue;
        out.add(list[p]);
        if (!step[p] && (!en || en.has(list[p]))) {
          step[p] = 1;
          queue.push(p);
        }
      }
    }
    out.delete(target);
    return out;
  }

  private listCache: number[] | null = null;

  /** Node ids by local index. */
  private nodeList(): number[] {
    if (!this.listCache) this.listCache = this.nodes.toArray();
    return this.listCache;
  }

  /** Is `a` a possible ancestor of `d` through nodes of `en` (see {@link possibleAncestorsOf})? */
  isPossibleAncestor(a: number, d: number, en?: PySet): boolean {
    return this.possibleAncestorsOf(d, en).has(a);
  }

  /**
   * Find a discriminating path <D, …, A, B, C> for B: every node between D and B is a collider and a parent
   * of C, and D is not adjacent to C. Searches back from A (given with A <-* B and A --> C); returns D.
   */
  findDiscriminatingPath(a: number, b: number, c: number, pool?: PySet): number | null {
    const nodes = pool ?? this.nodes.without(a, b, c);
    const ds = this.into(a, ARROW).without(a, b, c).intersect(nodes);
    const further = new PySet();
    for (const d of ds) {
      if (!this.isAdjacent(d, c)) return d;
      if (this.isParent(d, c) && this.markAt(d, a) === ARROW) further.add(d);
    }
    for (const na of further) {
      const d = this.findDiscriminatingPath(na, b, c, nodes.without(na));
      if (d !== null) return d;
    }
    return null;
  }

  /**
   * Find a path <x, nx, …, ny, y> on which every consecutive step satisfies `cond` and every three
   * consecutive nodes are unshielded; returns the inner nodes [nx, …, ny] or null. As in the reference, a
   * path with nx = ny is returned at once without checks.
   */
  findUncoveredPath(
    x: number,
    y: number,
    nx: number,
    ny: number,
    en?: PySet,
    cond: (a: number, b: number) => boolean = (a, b) => this.isAdjacent(a, b),
  ): number[] | null {
    if (nx === ny) return [nx];
    const pool = (en ?? this.nodes).without(x, y, nx, ny);
    if (cond(nx, ny) && !this.isAdjacent(nx, y) && !this.isAdjacent(x, ny)) return [nx, ny];
    const next = new PySet();
    for (const t of this.adjacent(nx, pool)) if (cond(nx, t) && !this.isAdjacent(x, t)) next.add(t);
    for (const t of next) {
      const path = this.findUncoveredPath(nx, y, t, ny, pool, cond);
      if (path) return [nx, ...path];
    }
    return null;
  }

  /** All edges, i < j, sorted. */
  edges(): PagEdge[] {
    const list = [...this.nodes].sort((a, b) => a - b);
    const out: PagEdge[] = [];
    for (let x = 0; x < list.length; x++) {
      for (let y = x + 1; y < list.length; y++) {
        const i = list[x];
        const j = list[y];
        if (this.isAdjacent(i, j))
          out.push({ i, j, markAtI: this.markAt(i, j) as Mark, markAtJ: this.markAt(j, i) as Mark });
      }
    }
    return out;
  }

  // --- modifications -------------------------------------------------------------------------------------

  /** Connect every pair with o-o (the per-node sets are built as `nodes − {v}`). */
  makeComplete(): void {
    for (const v of this.nodes) {
      const i = this.li(v);
      for (let m = 1; m <= 3; m++) this.byMark[i * 4 + m] = new PySet();
      this.byMark[i * 4 + CIRCLE] = this.nodes.without(v);
      for (const u of this.nodes) if (u !== v) this.marks[i * this.n + this.li(u)] = CIRCLE;
    }
  }

  /** Set the mark at `target` on the edge source–target. */
  setMark(source: number, target: number, mark: Mark): void {
    const t = this.li(target);
    for (let m = 1; m <= 3; m++) this.byMark[t * 4 + m].discard(source);
    this.byMark[t * 4 + mark].add(source);
    this.marks[t * this.n + this.li(source)] = mark;
  }

  /** Add an edge (nodes must not be adjacent). */
  addEdge(i: number, j: number, atI: Mark, atJ: Mark): void {
    if (this.isAdjacent(i, j)) throw new Error(`PAG: ${i} and ${j} are already adjacent`);
    this.setMark(j, i, atI);
    this.setMark(i, j, atJ);
  }

  removeEdge(a: number, b: number): void {
    const ia = this.li(a);
    const ib = this.li(b);
    for (let m = 1; m <= 3; m++) {
      this.byMark[ia * 4 + m].discard(b);
      this.byMark[ib * 4 + m].discard(a);
    }
    this.marks[ia * this.n + ib] = NONE;
    this.marks[ib * this.n + ia] = NONE;
  }

  /** Reset both marks of every edge within `among` (default all nodes) to `mark`. */
  resetMarks(mark: Mark, among?: PySet): void {
    for (const [x, y] of combinations((among ?? this.nodes).toArray(), 2)) {
      if (this.isAdjacent(x, y)) {
        this.setMark(x, y, mark);
        this.setMark(y, x, mark);
      }
    }
  }

  // --- orientation ----------------------------------------------------------------------------------------

  /** R0: for every unshielded triple x *-* z *-* y with z not in sepset(x, y), orient x *-> z <-* y. */
  orientVStructures(sepsets: SepSets): void {
    for (const z of this.nodes) {
      for (const [x, y] of combinations(this.adjacent(z).toArray(), 2)) {
        if (this.isAdjacent(x, y)) continue;
        if (!sepsets.get(x, y).has(z)) {
          this.setMark(x, z, ARROW);
          this.setMark(y, z, ARROW);
        }
      }
    }
  }

  /** Apply the given rules (in order, all of them each pass) until a pass changes nothing. */
  orientMaximally(rules: readonly number[] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]): void {
    for (let changed = true; changed; ) {
      changed = false;
      for (const r of rules) {
        const rule = this.rules[r];
        if (!rule) throw new Error(`PAG: no orientation rule ${r}`);
        if (rule()) changed = true;
      }
    }
  }

  /** R1: a *-> b o-* c, a and c not adjacent ⇒ b --> c. */
  rule1(): boolean {
    let changed = false;
    for (const b of this.nodes) {
      const as = this.into(b, ARROW).toArray();
      const cs = this.into(b, CIRCLE).copy().toArray();
      for (const a of as) {
        for (const c of cs) {
          if (!this.isAdjacent(a, c)) {
            this.setMark(c, b, TAIL);
            this.setMark(b, c, ARROW);
            changed = true;
          }
        }
      }
    }
    return changed;
  }

  /** R2: a --> b *-> c or a *-> b --> c, and a *-o c ⇒ a *-> c. */
  rule2(): boolean {
    let changed = false;
    for (const b of this.nodes) {
      const as = this.into(b, ARROW).toArray();
      for (const c of this.into(b, TAIL).toArray()) {
        if (this.markAt(c, b) !== ARROW) continue;
        for (const a of as) {
          if (this.markAt(c, a) === CIRCLE) {
            this.setMark(a, c, ARROW);
            changed = true;
          }
        }
      }
    }
    for (const c of this.nodes) {
      for (const b of this.into(c, ARROW).copy().toArray()) {
        for (const a of this.into(b, ARROW).toArray()) {
          if (this.markAt(a, b) !== TAIL) continue;
          if (this.markAt(c, a) === CIRCLE) {
            this.setMark(a, c, ARROW);
            changed = true;
          }
        }
      }
    }
    return changed;
  }

  /** R3: a *-> b <-* c, a *-o d o-* c, a and c not adjacent, d *-o b ⇒ d *-> b. */
  rule3(): boolean {
    let changed = false;
    for (const b of this.nodes) {
      for (const d of this.into(b, CIRCLE).copy().toArray()) {
        const ac = this.into(b, ARROW).intersect(this.into(d, CIRCLE));
        for (const [a, c] of combinations(ac.toArray(), 2)) {
          if (!this.isAdjacent(a, c)) {
            this.setMark(d, b, ARROW);
            changed = true;
          }
        }
      }
    }
    return changed;
  }

  /**
   * R4: a discriminating path <d, …, a, b, c> for b with b o-* c: b in sepset(d, c) ⇒ b --> c, otherwise
   * a <-> b <-> c.
   */
  rule4(): boolean {
    let changed = false;
    for (const b of this.nodes) {
      for (const c of this.into(b, CIRCLE).copy().toArray()) {
        for (const a of this.findParents(c)) {
          if (this.markAt(a, b) !== ARROW) continue;
          const d = this.findDiscriminatingPath(a, b, c);
          if (d === null) continue;
          if (this.sepsets.get(d, c).has(b)) {
            this.setMark(b, c, ARROW);
            this.setMark(c, b, TAIL);
          } else {
            this.setMark(b, a, ARROW);
            this.setMark(a, b, ARROW);
            this.setMark(b, c, ARROW);
            this.setMark(c, b, ARROW);
          }
          changed = true;
        }
      }
    }
    return changed;
  }

  /** R5: a o-o b with an uncovered circle path <a, x, …, y, b>, a–y and x–b not adjacent ⇒ all tails. */
  rule5(): boolean {
    let changed = false;
    const circleEdges: [number, number][] = [];
    for (const a of this.nodes)
      for (const b of this.nodes) if (this.isEdge(a, b, CIRCLE, CIRCLE)) circleEdges.push([a, b]);
    const circle = (u: number, v: number) => this.isEdge(u, v, CIRCLE, CIRCLE);
    for (const [a, b] of circleEdges) {
      const rest = this.nodes.without(a, b);
      const na = new PySet();
      for (const x of rest) if (this.isEdge(a, x, CIRCLE, CIRCLE) && !this.isAdjacent(b, x)) na.add(x);
      const nb = new PySet();
      for (const x of rest) if (this.isEdge(b, x, CIRCLE, CIRCLE) && !this.isAdjacent(a, x)) nb.add(x);
      for (const x of na) {
        for (const y of nb) {
          const path = this.findUncoveredPath(a, b, x, y, undefined, circle);
          if (!path) continue;
          changed = true;
          this.resetMarks(TAIL, PySet.of(a, b));
          const full = [a, ...path, b];
          for (let k = 0; k + 1 < full.length; k++) this.resetMarks(TAIL, PySet.of(full[k], full[k + 1]));
        }
      }
    }
    return changed;
  }

  /** R6: a --- b o-* c ⇒ b --* c. */
  rule6(): boolean {
    let changed = false;
    for (const b of this.nodes) {
      const as = new PySet();
      for (const x of this.into(b, TAIL)) if (this.markAt(x, b) === TAIL) as.add(x);
      const cs = this.into(b, CIRCLE).copy().toArray();
      for (const _a of as) {
        for (const c of cs) {
          this.setMark(c, b, TAIL);
          changed = true;
        }
      }
    }
    return changed;
  }

  /** R7: a --o b o-* c, a and c not adjacent ⇒ b --* c. */
  rule7(): boolean {
    let changed = false;
    for (const b of this.nodes) {
      const as = new PySet();
      for (const x of this.into(b, CIRCLE)) if (this.markAt(x, b) === TAIL) as.add(x);
      const cs = this.into(b, CIRCLE).copy().toArray();
      for (const a of as) {
        for (const c of cs) {
          if (a === c) continue;
          if (!this.isAdjacent(a, c)) {
            this.setMark(c, b, TAIL);
            changed = true;
          }
        }
      }
    }
    return changed;
  }

  /** R8: a --> b --> c or a --o b --> c, and a o-> c ⇒ a --> c. */
  rule8(): boolean {
    let changed = false;
    for (const b of this.nodes) {
      const as = new PySet();
      for (const x of this.into(b, ARROW).union(this.into(b, CIRCLE)))
        if (this.markAt(x, b) === TAIL) as.add(x);
      const cs = new PySet();
      for (const x of this.into(b, TAIL)) if (this.markAt(x, b) === ARROW) cs.add(x);
      for (const a of as) {
        for (const c of cs) {
          if (this.isEdge(a, c, CIRCLE, ARROW)) {
            this.setMark(c, a, TAIL);
            changed = true;
          }
        }
      }
    }
    return changed;
  }

  /** R9: a o-> c and an uncovered possibly directed path <a, b, …, c> with b, c not adjacent ⇒ a --> c. */
  rule9(): boolean {
    const possibleParent = (u: number, v: number) => this.isPossibleParent(u, v);
    for (const a of this.nodes) {
      const cs = new PySet();
      for (const x of this.into(a, CIRCLE)) if (this.markAt(x, a) === ARROW) cs.add(x);
      for (const c of cs) {
        const bs = new PySet();
        for (const x of this.findPossibleChildren(a, this.nodes.without(c, a)))
          if (!this.isAdjacent(x, c)) bs.add(x);
        for (const b of bs) {
          for (const d of this.findPossibleParents(c, this.nodes.without(a, b, c))) {
            if (this.findUncoveredPath(a, c, b, d, undefined, possibleParent)) {
              this.setMark(c, a, TAIL);
              return true;
            }
          }
        }
      }
    }
    return false;
  }

  /**
   * R10: a o-> c, b --> c <-- d, and two uncovered paths <a, e, …, b>, <a, f, …, d> with e, f not adjacent
   * ⇒ a --> c.
   */
  rule10(): boolean {
    for (const c of this.nodes) {
      const others = this.nodes.without(c);
      const as = new PySet();
      for (const x of others) if (this.isEdge(x, c, CIRCLE, ARROW)) as.add(x);
      if (as.size === 0) continue;
      const bd = new PySet();
      for (const x of others) if (this.isEdge(x, c, TAIL, ARROW)) bd.add(x);
      if (bd.size < 2) continue;
      for (const a of as) {
        const pc = this.findPossibleChildren(a, this.nodes.without(a, c)).toArray();
        if (pc.length < 2) continue;
        for (const [b, d] of combinations(bd.toArray(), 2)) {
          for (const e of pc) {
            for (const f of pc) {
              if (e === f || this.isAdjacent(e, f)) continue;
              if (this.findUncoveredPath(a, c, e, b) && this.findUncoveredPath(a, c, f, d)) {
                this.setMark(c, a, TAIL);
                return true;
              }
            }
          }
        }
      }
    }
    return false;
  }
}

/** The text form of an edge, e.g. "5 o-> 91", "25 --> 39", "5 <-> 20". */
export function edgeString(e: PagEdge): string {
  const left = e.markAtI === ARROW ? "<" : e.markAtI === TAIL ? "-" : "o";
  const right = e.markAtJ === ARROW ? ">" : e.markAtJ === TAIL ? "-" : "o";
  return `${e.i} ${left}-${right} ${e.j}`;
}
