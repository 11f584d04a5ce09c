/**
 * Multi-turn training data: conversations are deterministic, start with the ordinary sample's question and
 * never repeat a question; the token sequence is exactly the chat template's rendering of the conversation
 * with the stop token after each answer (LLaVA-1.5's training layout), and the loss spans cover the answers.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { after, describe, test } from "node:test";
import { Template } from "@huggingface/jinja";
import { LlavaModel } from "../src/models/llava/model.js";
import { sample, sampleConversation } from "../src/shapes/dataset.js";
import { EOS_TOKEN_ID, IMAGE_TOKEN_ID } from "../src/shapes/tokenizer.js";
import { makeExample } from "../src/train/examples.js";
import { ROOT } from "./fixture-utils.js";

const MODEL = path.join(ROOT, "models/llava-shapes");

describe("multi-turn training conversations", () => {
  test("first question is the sample's, the rest distinct, all deterministic", () => {
    let longer = 0;
    for (let i = 0; i < 200; i++) {
      const one = sampleConversation(3, i, 1);
      assert.deepEqual(one.qas, [sample(3, i).qa]);
      const conv = sampleConversation(3, i, 6);
      assert.deepEqual(conv.qas[0], sample(3, i).qa);
      assert.deepEqual(conv, sampleConversation(3, i, 6));
      assert.equal(new Set(conv.qas.map((q) => q.question)).size, conv.qas.length);
      assert.ok(conv.qas.length >= 1 && conv.qas.length <= 6);
      if (conv.qas.length >= 4) longer++;
    }
    assert.ok(longer > 150, `${longer} of 200 conversations have ≥ 4 questions`);
    assert.throws(() => sampleConversation(3, 0, 0), /turns/);
  });

  test("token layout equals the chat template's multi-turn rendering plus a stop token per answer", () => {
    const model = LlavaModel.load(MODEL);
    after(() => model.close());
    const cfg = JSON.parse(fs.readFileSync(path.join(MODEL, "tokenizer_config.json"), "utf8"));
    // {% generation %} marks (for assistant masks) are not supported by the renderer, as in TextProcessor.
    const template = new Template(cfg.chat_template.replace(/\{%-?\s*(end)?generation\s*-?%\}/g, ""));
    for (let i = 0; i < 20; i++) {
      const ex = makeExample(model, { seed: 11, turns: 4 }, i);
      const conv = sampleConversation(11, i, 4);
      const messages = conv.qas.flatMap((qa, t) => [
        {
          role: "user",
          content: [...(t === 0 ? [{ type: "image" }] : []), { type: "text", text: qa.question }],
        },
        { role: "assistant", content: [{ type: "text", text: qa.answer }] },
      ]);
      const text = template
        .render({ messages, add_generation_prompt: false })
        .replace("<image>", "<image>".repeat(model.imageTokenCount));
      const expected = model.text.tokenizer.encode(text).ids;
      assert.deepEqual(
        ex.inputIds.filter((id) => id !== EOS_TOKEN_ID),
        expected,
      );
      assert.equal(ex.inputIds.filter((id) => id === IMAGE_TOKEN_ID).length, model.imageTokenCount);
      assert.equal(ex.answerSpans.length, conv.qas.length);
      ex.answerSpans.forEach(([start, end], t) => {
        assert.equal(ex.inputIds[end - 1], EOS_TOKEN_ID);
        assert.equal(model.text.decode(ex.inputIds.slice(start, end - 1)), conv.qas[t]!.answer);
        assert.equal(model.text.idToToken(ex.inputIds[start - 1]!), ":", "answers follow 'ASSISTANT:'");
      });
      // The first turn is byte-for-byte the inference prompt.
      const prompt = model.text.encodePrompt(conv.qas[0]!.question, model.imageTokenCount).inputIds;
      assert.deepEqual(ex.inputIds.slice(0, prompt.length), prompt);
      assert.equal(ex.answerSpans[0]![0], prompt.length);
    }
  });
});
