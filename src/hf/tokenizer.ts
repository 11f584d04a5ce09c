/**
 * Text side of the processor: tokenizer.json through @huggingface/tokenizers, the chat template through
 * @huggingface/jinja, and the `<image>` placeholder expanded to one image token per image feature so that
 * sequence positions equal input_ids positions.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { Template } from "@huggingface/jinja";
import { Tokenizer } from "@huggingface/tokenizers";

export class TokenizerError extends Error {}

/** LLaVA-1.5's prompt form, used when the checkpoint ships no chat template. */
export const LLAVA15_FALLBACK_TEMPLATE = "USER: <image>\n{prompt} ASSISTANT:";

export interface PromptEncoding {
  chatText: string;
  inputIds: number[];
  imageTokenStart: number;
  imageTokenCount: number;
}

function readJson(file: string): Record<string, unknown> {
  try {
    return JSON.parse(fs.readFileSync(file, "utf8"));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new TokenizerError(
      code === "ENOENT" ? `${file}: not found` : `${file}: invalid JSON (${(e as Error).message})`,
    );
  }
}

function tokenString(v: unknown): string | null {
  if (typeof v === "string") return v;
  if (v && typeof v === "object" && typeof (v as { content?: unknown }).content === "string")
    return (v as { content: string }).content;
  return null;
}

export class TextProcessor {
  private readonly template: Template | null;

  private constructor(
    readonly tokenizer: Tokenizer,
    private readonly tokenizerConfig: Record<string, unknown>,
    templateSource: string | null,
    readonly imageToken: string,
    readonly imageTokenId: number,
  ) {
    // `{% generation %}` only marks assistant spans for training masks; it has no output of its own.
    this.template = templateSource
      ? new Template(templateSource.replace(/\{%-?\s*(end)?generation\s*-?%\}/g, ""))
      : null;
  }

  static load(dir: string, imageTokenId: number): TextProcessor {
    const tokFile = path.join(dir, "tokenizer.json");
    const cfgFile = path.join(dir, "tokenizer_config.json");
    const tokJson = readJson(tokFile);
    const cfg = fs.existsSync(cfgFile) ? readJson(cfgFile) : {};
    let tokenizer: Tokenizer;
    try {
      tokenizer = new Tokenizer(tokJson, cfg);
    } catch (e) {
      throw new TokenizerError(`${tokFile}: cannot build tokenizer (${(e as Error).message})`);
    }
    // The processor's template (chat_template.json / .jinja) is what LlavaProcessor applies; fall back to the
    // tokenizer's own.
    let template: string | null = null;
    const ctJson = path.join(dir, "chat_template.json");
    const ctJinja = path.join(dir, "chat_template.jinja");
    if (fs.existsSync(ctJson)) template = tokenString(readJson(ctJson).chat_template);
    else if (fs.existsSync(ctJinja)) template = fs.readFileSync(ctJinja, "utf8");
    if (!template) {
      const t = cfg.chat_template;
      if (typeof t === "string") template = t;
      else if (Array.isArray(t))
        template = (t.find((x) => x?.name === "default")?.template as string | undefined) ?? null;
    }
    const imageToken = tokenizer.id_to_token(imageTokenId);
    if (imageToken === undefined)
      throw new TokenizerError(
        `${tokFile}: image token id ${imageTokenId} (config image_token_index) is not in the vocabulary`,
      );
    let proc: TextProcessor;
    try {
      proc = new TextProcessor(tokenizer, cfg, template, imageToken, imageTokenId);
    } catch (e) {
      throw new TokenizerError(`${dir}: chat template does not parse (${(e as Error).message})`);
    }
    return proc;
  }

  get hasChatTemplate(): boolean {
    return this.template !== null;
  }

  special(name: "bos_token" | "eos_token" | "pad_token" | "unk_token"): string | null {
    return tokenString(this.tokenizerConfig[name]);
  }

  tokenId(token: string): number | undefined {
    return this.tokenizer.token_to_id(token);
  }

  /** The chat text for one user turn with one image, ending where the assistant's answer begins. */
  renderChat(prompt: string): string {
    if (!this.template) return LLAVA15_FALLBACK_TEMPLATE.replace("{prompt}", prompt);
    const messages = [{ role: "user", content: [{ type: "image" }, { type: "text", text: prompt }] }];
    return this.template.render({
      messages,
      add_generation_prompt: true,
      bos_token: this.special("bos_token") ?? "",
      eos_token: this.special("eos_token") ?? "",
      pad_token: this.special("pad_token") ?? "",
      unk_token: this.special("unk_token") ?? "",
    });
  }

  /**
   * Why a question cannot be asked as written, or null: it contains the image placeholder. The processor expands
   * every placeholder in the chat text to image tokens (so does HF's LlavaProcessor, whose model then fails with
   * "Image features and image tokens do not match"), so it can never be read as plain text.
   */
  placeholderProblem(question: string): string | null {
    if (!question.includes(this.imageToken)) return null;
    const t = JSON.stringify(this.imageToken);
    return `the question contains ${t}, the model's image placeholder, which would be read as a second image (as in HF LLaVA, where it fails): remove it or write it differently, e.g. "[image]"`;
  }

  /**
   * A warning when the tokenizer reads some or all of the question as its unknown token (emoji and other
   * characters outside a vocabulary without byte fallback): the model never sees that text. Null otherwise.
   */
  unknownTokenWarning(question: string): string | null {
    const unk = this.special("unk_token");
    const unkId = unk === null ? undefined : this.tokenId(unk);
    if (unkId === undefined) return null;
    const ids = this.tokenizer.encode(question, { add_special_tokens: false }).ids;
    const n = ids.filter((id: number) => id === unkId).length;
    if (n === 0) return null;
    if (n === ids.length)
      return `the model's tokenizer knows none of the question: all of it reads as the unknown token ${unk} (${n}×), so the model answers without seeing it; use words it knows (emoji and other symbols are outside its vocabulary)`;
    return `${n} of the question's ${ids.length} tokens are the unknown token ${unk}: the model does not see that text (emoji and other symbols are outside its vocabulary)`;
  }

  /** Render, expand `<image>` to `imageTokenCount` copies, tokenize; checks the image span is contiguous. */
  encodePrompt(prompt: string, imageTokenCount: number): PromptEncoding {
    const problem = this.placeholderProblem(prompt);
    if (problem) throw new TokenizerError(problem);
    const chatText = this.renderChat(prompt);
    const parts = chatText.split(this.imageToken);
    if (parts.length !== 2) {
      throw new TokenizerError(
        `chat text must contain the image placeholder ${this.imageToken} exactly once, found ${parts.length - 1}`,
      );
    }
    const expanded = parts[0] + this.imageToken.repeat(imageTokenCount) + parts[1];
    // Templates that already emit BOS must not get a second one from the post-processor.
    const bos = this.special("bos_token");
    const addSpecial = !(bos && expanded.startsWith(bos));
    const inputIds = this.tokenizer.encode(expanded, { add_special_tokens: addSpecial }).ids;
    const start = inputIds.indexOf(this.imageTokenId);
    let count = 0;
    for (const id of inputIds) if (id === this.imageTokenId) count++;
    if (start < 0 || count !== imageTokenCount || inputIds[start + count - 1] !== this.imageTokenId) {
      throw new TokenizerError(
        `tokenized prompt has ${count} image tokens (expected ${imageTokenCount} in one contiguous span)`,
      );
    }
    return { chatText, inputIds, imageTokenStart: start, imageTokenCount };
  }

  decode(ids: number[], skipSpecial = false): string {
    return this.tokenizer.decode(ids, { skip_special_tokens: skipSpecial });
  }

  idToToken(id: number): string {
    return this.tokenizer.id_to_token(id) ?? `<${id}>`;
  }
}
