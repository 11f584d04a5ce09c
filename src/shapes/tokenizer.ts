/**
 * Word-level tokenizer for the shapes model, as Hugging Face `tokenizers` JSON (read by both the Rust/Python
 * library and @huggingface/tokenizers):
 *
 * - model: WordLevel over every word of every question template, every answer, the chat scaffolding
 *   ("USER", "ASSISTANT") and punctuation; unknown words → `<unk>`.
 * - normalizer: Lowercase (templates are capitalised, the vocabulary is not).
 * - pre-tokenizer: BertPreTokenizer (split on whitespace, every punctuation character on its own:
 *   "circle?" → "circle", "?").
 * - post-processor: TemplateProcessing adding `<s>` in front.
 * - decoder: WordPiece (joins tokens with spaces, "##" never occurs) with cleanup (" ?" → "?", " ," → ",",
 *   " ." → "."), then " :" → ":".
 *
 * Special tokens have fixed ids: `<unk>` 0, `<s>` 1, `</s>` 2, `<pad>` 3, `<image>` 4 (config.json's
 * image_token_index). The chat template is llava-hf's LLaVA-1.5 one: `USER: <image>\n{question} ASSISTANT:`.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { makeDirs } from "../run/out-dir.js";
import { ANSWER_WORDS, QUESTION_TEMPLATES } from "./questions.js";
import { COLOR_NAMES, SHAPE_NAMES } from "./scene.js";

export const UNK_TOKEN = "<unk>";
export const BOS_TOKEN = "<s>";
export const EOS_TOKEN = "</s>";
export const PAD_TOKEN = "<pad>";
export const IMAGE_TOKEN = "<image>";

/** Special tokens in id order. */
export const SPECIAL_TOKENS = [UNK_TOKEN, BOS_TOKEN, EOS_TOKEN, PAD_TOKEN, IMAGE_TOKEN] as const;
export const UNK_TOKEN_ID = 0;
export const BOS_TOKEN_ID = 1;
export const EOS_TOKEN_ID = 2;
export const PAD_TOKEN_ID = 3;
export const IMAGE_TOKEN_ID = 4;

/** llava-hf's LLaVA-1.5 chat template (same as llava-1.5-7b-hf's tokenizer_config.json). */
export const SHAPES_CHAT_TEMPLATE =
  "{% for message in messages %}{% if message['role'] != 'system' %}{{ message['role'].upper() + ': '}}{% endif %}" +
  "{# Render all images first #}{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}" +
  "{{ '<image>\n' }}{% endfor %}{# Render all text next #}{% if message['role'] != 'assistant' %}" +
  "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] + ' '}}" +
  "{% endfor %}{% else %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}" +
  "{% generation %}{{ content['text'] + ' '}}{% endgeneration %}{% endfor %}{% endif %}{% endfor %}" +
  "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}";

/** Text outside the question that the chat template produces. */
const SCAFFOLD_TEXT = "USER: ASSISTANT:";

const PUNCT = "\\p{P}\\u0021-\\u002F\\u003A-\\u0040\\u005B-\\u0060\\u007B-\\u007E";
const WORD_RE = new RegExp(`[^\\s${PUNCT}]+|[${PUNCT}]`, "gu");
const IS_PUNCT = new RegExp(`^[${PUNCT}]$`, "u");

/** What the normalizer + pre-tokenizer make of plain text (no special tokens): lowercase words and punctuation. */
export function splitWords(text: string): string[] {
  return text.toLowerCase().match(WORD_RE) ?? [];
}

/** The non-special vocabulary: punctuation first, then words, each sorted. */
export function shapesVocabularyWords(): string[] {
  const texts: string[] = [SCAFFOLD_TEXT, ...ANSWER_WORDS, ...COLOR_NAMES, ...SHAPE_NAMES, "a", "an"];
  for (const list of Object.values(QUESTION_TEMPLATES)) {
    for (const t of list) texts.push(t.replace(/\{[a-z_0-9]+\}/g, " "));
  }
  const words = new Set<string>();
  for (const t of texts) for (const w of splitWords(t)) words.add(w);
  const all = [...words];
  const punct = all.filter((w) => IS_PUNCT.test(w)).sort();
  const plain = all.filter((w) => !IS_PUNCT.test(w)).sort();
  return [...punct, ...plain];
}

export interface ShapesTokenizerFiles {
  /** tokenizer.json */
  tokenizer: Record<string, unknown>;
  /** tokenizer_config.json */
  tokenizerConfig: Record<string, unknown>;
  /** special_tokens_map.json */
  specialTokensMap: Record<string, unknown>;
  /** token → id, specials included. */
  vocab: Record<string, number>;
}

function addedToken(id: number, content: string) {
  return { id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true };
}

export function buildShapesTokenizer(): ShapesTokenizerFiles {
  const vocab: Record<string, number> = {};
  SPECIAL_TOKENS.forEach((t, i) => {
    vocab[t] = i;
  });
  for (const w of shapesVocabularyWords()) vocab[w] = Object.keys(vocab).length;

  const tokenizer = {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: SPECIAL_TOKENS.map((t, i) => addedToken(i, t)),
    normalizer: { type: "Lowercase" },
    pre_tokenizer: { type: "BertPreTokenizer" },
    post_processor: {
      type: "TemplateProcessing",
      single: [{ SpecialToken: { id: BOS_TOKEN, type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }],
      pair: [
        { SpecialToken: { id: BOS_TOKEN, type_id: 0 } },
        { Sequence: { id: "A", type_id: 0 } },
        { SpecialToken: { id: BOS_TOKEN, type_id: 1 } },
        { Sequence: { id: "B", type_id: 1 } },
      ],
      special_tokens: { [BOS_TOKEN]: { id: BOS_TOKEN, ids: [BOS_TOKEN_ID], tokens: [BOS_TOKEN] } },
    },
    decoder: {
      type: "Sequence",
      decoders: [
        { type: "WordPiece", prefix: "##", cleanup: true },
        { type: "Replace", pattern: { String: " :" }, content: ":" },
      ],
    },
    model: { type: "WordLevel", vocab, unk_token: UNK_TOKEN },
  };

  const addedTokensDecoder: Record<string, unknown> = {};
  SPECIAL_TOKENS.forEach((t, i) => {
    const { id: _id, ...rest } = addedToken(i, t);
    addedTokensDecoder[String(i)] = rest;
  });
  const tokenizerConfig = {
    add_bos_token: true,
    add_eos_token: false,
    added_tokens_decoder: addedTokensDecoder,
    bos_token: BOS_TOKEN,
    eos_token: EOS_TOKEN,
    unk_token: UNK_TOKEN,
    pad_token: PAD_TOKEN,
    chat_template: SHAPES_CHAT_TEMPLATE,
    clean_up_tokenization_spaces: false,
    model_max_length: 1024,
    padding_side: "left",
    tokenizer_class: "PreTrainedTokenizerFast",
  };
  const specialTokensMap = {
    bos_token: BOS_TOKEN,
    eos_token: EOS_TOKEN,
    unk_token: UNK_TOKEN,
    pad_token: PAD_TOKEN,
    image_token: IMAGE_TOKEN,
  };
  return { tokenizer, tokenizerConfig, specialTokensMap, vocab };
}

/** Writes tokenizer.json, tokenizer_config.json and special_tokens_map.json into `dir` (created if needed). */
export function writeShapesTokenizer(dir: string): ShapesTokenizerFiles {
  const files = buildShapesTokenizer();
  makeDirs(dir);
  const write = (name: string, obj: unknown) =>
    fs.writeFileSync(path.join(dir, name), `${JSON.stringify(obj, null, 2)}\n`, "utf8");
  write("tokenizer.json", files.tokenizer);
  write("tokenizer_config.json", files.tokenizerConfig);
  write("special_tokens_map.json", files.specialTokensMap);
  return files;
}
