/**
 * A set of small non-negative integers whose iteration order is CPython's (3.11+).
 *
 * Why: the reference CLEANN / ordered-ICD implementation is written against Python sets of token positions,
 * and many of its choices are "the first one found": which conditioning node separates a pair first (and so
 * becomes the separating set), which neighbour of a node is expanded first in a PDS tree (and so owns the
 * shared edge one level deeper), which discriminating path is found first. Those choices follow the iteration
 * order of the sets involved, and CPython iterates a set in hash-table slot order — a function of the whole
 * insertion/deletion history of that set object. To reproduce the reference's discrete results exactly we
 * keep the same table: open addressing with 10-slot linear probe runs followed by perturbed probing, dummy
 * (deleted) slots, resize at 60 % fill to the smallest power of two above 4×used, and the same bulk paths for
 * copy / union / difference / intersection. For an int, hash(i) = i.
 *
 * Membership is answered from a side index, so `has` costs one typed-array lookup; the table is only walked
 * for inserts, deletes and iteration. Keys must be integers in [0, 2^31).
 */

const EMPTY = -1;
const DUMMY = -2;
const MINSIZE = 8;
const LINEAR_PROBES = 9;
const PERTURB_SHIFT = 5;

function checkKey(key: number): void {
  if (!Number.isInteger(key) || key < 0 || key > 0x7fffffff)
    throw new RangeError(`PySet: key ${key} is not a small non-negative integer`);
}

export class PySet implements Iterable<number> {
  /** Slot table: a key, EMPTY or DUMMY. Length mask + 1 (a power of two). */
  private table: Int32Array;
  private mask: number;
  /** Active + dummy slots. */
  private fill = 0;
  /** Active slots. */
  private used = 0;
  /** key → slot, for O(1) membership and deletion. */
  private readonly slotOf = new Map<number, number>();

  constructor() {
    this.table = new Int32Array(MINSIZE).fill(EMPTY);
    this.mask = MINSIZE - 1;
  }

  /** `set(iterable)`: a PySet source is merged (bulk copy), anything else is added element by element. */
  static from(items: Iterable<number>): PySet {
    const s = new PySet();
    s.update(items);
    return s;
  }

  /** `{a, b, c}` literal: elements added left to right. */
  static of(...items: number[]): PySet {
    const s = new PySet();
    for (const k of items) s.add(k);
    return s;
  }

  get size(): number {
    return this.used;
  }

  has(key: number): boolean {
    return this.slotOf.has(key);
  }

  /** Elements in slot order (CPython iteration order). */
  *[Symbol.iterator](): Iterator<number> {
    const t = this.table;
    for (let i = 0; i < t.length; i++) {
      const k = t[i];
      if (k >= 0) yield k;
    }
  }

  /** Elements in iteration order, as an array (what `tuple(s)` / `list(s)` give). */
  toArray(): number[] {
    const out: number[] = [];
    const t = this.table;
    for (let i = 0; i < t.length; i++) if (t[i] >= 0) out.push(t[i]);
    return out;
  }

  add(key: number): void {
    if (this.slotOf.has(key)) return;
    checkKey(key);
    // Walk the probe sequence to the first never-used slot, remembering the last dummy seen on the way: a
    // new key takes that dummy if there was one (fill unchanged), else the never-used slot.
    const t = this.table;
    const mask = this.mask;
    let i = key & mask;
    let perturb = key;
    let freeslot = -1;
    for (;;) {
      const last = i + LINEAR_PROBES <= mask ? i + LINEAR_PROBES : i;
      for (let j = i; j <= last; j++) {
        const k = t[j];
        if (k === EMPTY) {
          if (freeslot >= 0) {
            t[freeslot] = key;
            this.slotOf.set(key, freeslot);
            this.used++;
            return;
          }
          t[j] = key;
          this.slotOf.set(key, j);
          this.fill++;
          this.used++;
          if (this.fill * 5 >= mask * 3) this.resize(this.used > 50000 ? this.used * 2 : this.used * 4);
          return;
        }
        if (k === DUMMY) freeslot = j;
      }
      perturb = Math.floor(perturb / (1 << PERTURB_SHIFT));
      i = (i * 5 + 1 + perturb) & mask;
    }
  }

  discard(key: number): boolean {
    const slot = this.slotOf.get(key);
    if (slot === undefined) return false;
    this.table[slot] = DUMMY;
    this.slotOf.delete(key);
    this.used--;
    return true;
  }

  clear(): void {
    this.table = new Int32Array(MINSIZE).fill(EMPTY);
    this.mask = MINSIZE - 1;
    this.fill = 0;
    this.used = 0;
    this.slotOf.clear();
  }

  copy(): PySet {
    const s = new PySet();
    s.merge(this);
    return s;
  }

  /** `s.update(x)` / `s |= x`. */
  update(items: Iterable<number>): void {
    if (items instanceof PySet) this.merge(items);
    else for (const k of items) this.add(k);
  }

  /** `s | other`. */
  union(other: PySet): PySet {
    const s = this.copy();
    if (other !== this) s.merge(other);
    return s;
  }

  /** `s - other`. */
  minus(other: PySet): PySet {
    if (this.used >> 2 > other.used) {
      const s = this.copy();
      s.differenceUpdate(other);
      return s;
    }
    const s = new PySet();
    const t = this.table;
    for (let i = 0; i < t.length; i++) {
      const k = t[i];
      if (k >= 0 && !other.has(k)) s.add(k);
    }
    return s;
  }

  /** `s - {a, b, …}`. */
  without(...keys: number[]): PySet {
    return this.minus(PySet.of(...keys));
  }

  /** `s & other`: walks the smaller operand (the right one on a tie). */
  intersect(other: PySet): PySet {
    if (other === this) return this.copy();
    let big: PySet = this;
    let small: PySet = other;
    if (other.used > this.used) {
      big = other;
      small = this;
    }
    const s = new PySet();
    const t = small.table;
    for (let i = 0; i < t.length; i++) {
      const k = t[i];
      if (k >= 0 && big.has(k)) s.add(k);
    }
    return s;
  }

  /** `s -= other` / `s.difference_update(other)`. */
  differenceUpdate(other: PySet): void {
    if (other === this) {
      this.clear();
      return;
    }
    const src = other.used >> 3 > this.used ? this.intersect(other) : other;
    const t = src.table;
    for (let i = 0; i < t.length; i++) {
      const k = t[i];
      if (k >= 0) this.discard(k);
    }
    if (this.fill - this.used <= Math.floor(this.mask / 4)) return;
    this.resize(this.used > 50000 ? this.used * 2 : this.used * 4);
  }

  private merge(other: PySet): void {
    if (other === this || other.used === 0) return;
    if ((this.fill + other.used) * 5 >= this.mask * 3) this.resize((this.used + other.used) * 2);
    const ot = other.table;
    if (this.fill === 0 && this.mask === other.mask && other.fill === other.used) {
      this.table.set(ot);
      for (let i = 0; i < ot.length; i++) if (ot[i] >= 0) this.slotOf.set(ot[i], i);
      this.fill = other.fill;
      this.used = other.used;
      return;
    }
    if (this.fill === 0) {
      this.fill = other.used;
      this.used = other.used;
      for (let i = 0; i < ot.length; i++) if (ot[i] >= 0) this.insertClean(ot[i]);
      return;
    }
    for (let i = 0; i < ot.length; i++) if (ot[i] >= 0) this.add(ot[i]);
  }

  /** Place a key known to be absent into a table known to have no dummies. */
  private insertClean(key: number): void {
    const t = this.table;
    const mask = this.mask;
    let i = key & mask;
    let perturb = key;
    for (;;) {
      if (t[i] === EMPTY) {
        t[i] = key;
        this.slotOf.set(key, i);
        return;
      }
      if (i + LINEAR_PROBES <= mask) {
        for (let j = 1; j <= LINEAR_PROBES; j++) {
          if (t[i + j] === EMPTY) {
            t[i + j] = key;
            this.slotOf.set(key, i + j);
            return;
          }
        }
      }
      perturb = Math.floor(perturb / (1 << PERTURB_SHIFT));
      i = (i * 5 + 1 + perturb) & mask;
    }
  }

  private resize(minused: number): void {
    let newsize = MINSIZE;
    while (newsize <= minused) newsize *= 2;
    if (newsize === MINSIZE && this.mask === MINSIZE - 1 && this.fill === this.used) return;
    const old = this.table;
    this.table = new Int32Array(newsize).fill(EMPTY);
    this.mask = newsize - 1;
    this.fill = this.used;
    this.slotOf.clear();
    for (let i = 0; i < old.length; i++) if (old[i] >= 0) this.insertClean(old[i]);
  }
}

/** `itertools.combinations(items, k)`: k-subsets in lexicographic order of positions. */
export function* combinations<T>(items: readonly T[], k: number): Generator<T[]> {
  const n = items.length;
  if (k > n || k < 0) return;
  const idx = Array.from({ length: k }, (_, i) => i);
  for (;;) {
    yield idx.map((i) => items[i]);
    let i = k - 1;
    while (i >= 0 && idx[i] === i + n - k) i--;
    if (i < 0) return;
    idx[i]++;
    for (let j = i + 1; j < k; j++) idx[j] = idx[j - 1] + 1;
  }
}
