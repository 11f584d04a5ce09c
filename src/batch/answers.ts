/**
 * Is an answer right? Multiple choice compares option letters (the model may answer "(a)", "a", or an
 * option's text); free answers compare normalised text (case, punctuation, articles and spacing ignored).
 */

export interface Correctness {
  correct: boolean | null;
  match: "text" | "letter" | null;
}

export function normaliseAnswer(s: string): string {
  return s
    .toLowerCase()
    .replace(/<\/?s>|<[^>]*>/g, " ")
    .replace(/[^\p{L}\p{N}\s]/gu, " ")
    .split(/\s+/)
    .filter((w) => w && w !== "a" && w !== "an" && w !== "the")
    .join(" ");
}

/** The question as the model sees it: options appended as "(a) … (b) …", as MMVP presents them. */
export function promptFor(question: string, options: string[] | null): string {
  if (!options) return question;
  return `${question} ${options.map((o, i) => `(${String.fromCharCode(97 + i)}) ${o}`).join(" ")}`;
}

/** The option a text designates: a letter ("(b)", "b", "b.", "b)") or exactly one option's text; else -1. */
export function optionIndex(text: string, options: string[]): number {
  const t = text.trim().toLowerCase();
  const m = /^\(?([a-z])\)?(?:[.:)\s]|$)/.exec(t);
  if (m) {
    const i = m[1].charCodeAt(0) - 97;
    // A lone letter, or a letter followed by that option's text; "a circle" is not option (a).
    const rest = normaliseAnswer(t.slice(m[0].length));
    if (i < options.length && (m[0].startsWith("(") || rest === "" || rest === normaliseAnswer(options[i])))
      return i;
  }
  const n = normaliseAnswer(text);
  const exact = options.findIndex((o) => normaliseAnswer(o) === n);
  if (exact >= 0) return exact;
  const contained = options
    .map((o, i) => ({ i, o: normaliseAnswer(o) }))
    .filter(({ o }) => o && new RegExp(`(^| )${o.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}( |$)`).test(n));
  return contained.length === 1 ? contained[0].i : -1;
}

export function judgeAnswer(answer: string, expected: string | null, options: string[] | null): Correctness {
  if (expected === null) return { correct: null, match: null };
  if (options) {
    const want = optionIndex(expected, options);
    if (want >= 0) return { correct: optionIndex(answer, options) === want, match: "letter" };
  }
  return { correct: normaliseAnswer(answer) === normaliseAnswer(expected), match: "text" };
}
