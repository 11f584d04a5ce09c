/**
 * Grouping sub-word tokens into words, and word-level relevancy maps by averaging token maps.
 *
 * Two groupings:
 *  - `groupWords` (ours, used by the views): a token starts a new word when it begins with a word-boundary
 *    marker — SentencePiece `▁`, byte-level BPE `Ġ` (or `Ċ`, a newline), a plain space — or when it is a
 *    separator (punctuation, whitespace, byte tokens such as `<0x0A>`, special tokens such as `</s>`), which
 *    is a word of its own; the token after a separator starts a new word too.
 *  - `lvlmWordGroups` (parity with LVLM-Interpret's `compute_word_rel_map`): a token not starting with `▁`
 *    and not in the tool's separator list continues the current word (even right after a separator); the
 *    tool's per-token dictionary renames a repeated token by appending `_` (a third repeat overwrites the
 *    second), and a repeated word overwrites the earlier word's map while keeping its place.
 */

/** LVLM-Interpret's SEPARATORS_LIST (the strings its word grouping treats as boundaries). */
export const LVLM_SEPARATORS: readonly string[] = [
  ".",
  ",",
  "?",
  "!",
  ":",
  ";",
  "</s>",
  "/",
  "(",
  ")",
  "[",
  "]",
  "{",
  "}",
  "<",
  ">",
  "|",
  "\\",
  "-",
  "_",
  "+",
  "=",
  "*",
  "&",
  "^",
  "%",
  "$",
  "#",
  "@",
  "~",
  "`",
  " ",
  "\t",
  "\n",
  "\r",
  "\x0b",
  "\x0c",
];

const BOUNDARY_MARKERS = ["▁", "Ġ", "Ċ", " ", "\n", "\t"];

export interface WordGroup {
  /** Display text: the tokens joined, boundary markers removed. */
  text: string;
  /** Indices of the tokens (into the list given) that make up the word. */
  tokens: number[];
}

/** Strips SentencePiece/byte-level boundary markers for display (`▁the` → `the`, `<0x0A>` → `\n`). */
export function tokenDisplayText(token: string): string {
  const byte = /^<0x([0-9A-Fa-f]{2})>$/.exec(token);
  if (byte) return String.fromCharCode(Number.parseInt(byte[1], 16));
  return token
    .replace(/^[▁ĠĊ]+/, "")
    .replaceAll("▁", " ")
    .replaceAll("Ġ", " ");
}

/** A token that is a word of its own: punctuation/whitespace only, a byte token, or a special token. */
export function isSeparatorToken(token: string): boolean {
  if (/^<0x[0-9A-Fa-f]{2}>$/.test(token)) return true;
  if (/^<\/?[A-Za-z_|][^<>]*>$/.test(token)) return true; // </s>, <s>, <end_of_turn>, <|im_end|>
  const text = token.replace(/^[▁ĠĊ]+/, "");
  return text.length === 0 || /^[\p{P}\p{S}\s]+$/u.test(text);
}

export function groupWords(tokens: string[]): WordGroup[] {
  const words: WordGroup[] = [];
  let prevSeparator = true;
  // Word-level vocabularies (e.g. the embedded shapes model) mark no word starts at all: there every token is
  // a word. Sub-word vocabularies mark the start of nearly every word; in the rare span of unmarked pieces
  // (a continuation such as "ing", "s") the pieces then show as separate words.
  const marksWords = tokens.some((t) => BOUNDARY_MARKERS.some((m) => t.startsWith(m)));
  tokens.forEach((tok, i) => {
    const sep = isSeparatorToken(tok);
    const boundary = !marksWords || BOUNDARY_MARKERS.some((m) => tok.startsWith(m));
    if (words.length === 0 || sep || prevSeparator || boundary) words.push({ text: "", tokens: [] });
    const w = words[words.length - 1];
    w.tokens.push(i);
    w.text += w.tokens.length === 1 ? tokenDisplayText(tok).trimStart() : tokenDisplayText(tok);
    prevSeparator = sep;
  });
  return words;
}

/** The keys of LVLM-Interpret's per-token ("llama_token") dictionary, in insertion order. */
export function lvlmTokenKeys(tokens: string[]): { keys: string[]; renamed: string[] } {
  const seen = new Set<string>();
  const keys: string[] = [];
  const renamed = tokens.map((t) => {
    const k = seen.has(t) ? `${t}_` : t;
    if (!seen.has(k)) {
      seen.add(k);
      keys.push(k);
    }
    return k;
  });
  return { keys, renamed };
}

/**
 * LVLM-Interpret's word dictionary: ordered keys, each with the tokens of the (last) word stored under it.
 */
export function lvlmWordGroups(tokens: string[]): { key: string; tokens: number[] }[] {
  const { renamed } = lvlmTokenKeys(tokens);
  const order: string[] = [];
  const byKey = new Map<string, number[]>();
  const store = (key: string, toks: number[]) => {
    if (!byKey.has(key)) order.push(key);
    byKey.set(key, toks);
  };
  let word = "";
  let members: number[] = [];
  renamed.forEach((tok, i) => {
    if (i > 0 && !tok.startsWith("▁") && !LVLM_SEPARATORS.includes(tok)) {
      word += tok;
      members.push(i);
    } else {
      if (i > 0) store(word, members);
      word = tok;
      members = [i];
    }
  });
  if (renamed.length > 0) store(word, members);
  return order.map((key) => ({ key, tokens: byKey.get(key)! }));
}

/**
 * Mean of square maps of growing sizes (token t's map is n_t×n_t), each zero-padded to the largest — the
 * tool's word map.
 */
export function averagePaddedSquares(maps: { data: ArrayLike<number>; n: number }[]): {
  data: Float32Array;
  n: number;
} {
  if (maps.length === 0) throw new Error("averagePaddedSquares: no maps");
  const N = Math.max(...maps.map((m) => m.n));
  const acc = new Float64Array(N * N);
  for (const m of maps) {
    for (let i = 0; i < m.n; i++) for (let j = 0; j < m.n; j++) acc[i * N + j] += m.data[i * m.n + j];
  }
  return { data: Float32Array.from(acc, (v) => v / maps.length), n: N };
}

/** Mean of rows of different lengths, each zero-padded to the longest (a word's relevancy row). */
export function averagePaddedRows(rows: ArrayLike<number>[]): Float32Array {
  if (rows.length === 0) throw new Error("averagePaddedRows: no rows");
  const N = Math.max(...rows.map((r) => r.length));
  const acc = new Float64Array(N);
  for (const r of rows) for (let j = 0; j < r.length; j++) acc[j] += r[j];
  const out = new Float32Array(N);
  for (let j = 0; j < N; j++) out[j] = acc[j] / rows.length;
  return out;
}
