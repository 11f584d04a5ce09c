import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { Tokenizer } from "@huggingface/tokenizers";
import { TextProcessor } from "../src/hf/tokenizer.js";
import {
  objectPatchCoverage,
  patchCoverage,
  relatedMask,
  SHAPES_PATCH_SIZE,
  sample,
  targetPatchCoverage,
} from "../src/shapes/dataset.js";
import {
  ANSWER_WORDS,
  fillTemplate,
  type QA,
  QUESTION_KINDS,
  QUESTION_TEMPLATES,
  questionsFor,
  sampleQA,
} from "../src/shapes/questions.js";
import {
  BACKGROUND_MAX_CHROMA,
  COLOR_NAMES,
  generateScene,
  IMAGE_SIZE,
  rasterizeShape,
  type Scene,
  SHAPE_NAMES,
} from "../src/shapes/scene.js";
import {
  BOS_TOKEN_ID,
  buildShapesTokenizer,
  EOS_TOKEN_ID,
  IMAGE_TOKEN_ID,
  PAD_TOKEN_ID,
  SHAPES_CHAT_TEMPLATE,
  SPECIAL_TOKENS,
  UNK_TOKEN_ID,
  writeShapesTokenizer,
} from "../src/shapes/tokenizer.js";
import { hashSeed, Rng } from "../src/tensor/rng.js";

// dist/test/shapes.test.js → repository root
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");

function fnv1a(bytes: Uint8Array, h = 0x811c9dc5): number {
  for (let i = 0; i < bytes.length; i++) {
    h ^= bytes[i]!;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

function scenes(seed: number, n: number): Scene[] {
  const rng = new Rng(seed);
  return Array.from({ length: n }, () => generateScene(rng));
}

describe("shapes rng", () => {
  it("is deterministic per seed and differs across seeds", () => {
    const a = new Rng(42);
    const b = new Rng(42);
    const c = new Rng(43);
    const sa = Array.from({ length: 50 }, () => a.nextU32());
    const sb = Array.from({ length: 50 }, () => b.nextU32());
    const sc = Array.from({ length: 50 }, () => c.nextU32());
    assert.deepEqual(sa, sb);
    assert.notDeepEqual(sa, sc);
    assert.notEqual(hashSeed(1, 2), hashSeed(2, 1));
    assert.notEqual(hashSeed(0, 2 ** 32), hashSeed(0, 0));
  });

  it("int / float / pick / shuffle stay in range", () => {
    const r = new Rng(7);
    const seen = new Set<number>();
    for (let i = 0; i < 2000; i++) {
      const v = r.int(-2, 3);
      assert.ok(Number.isInteger(v) && v >= -2 && v <= 3);
      seen.add(v);
      const f = r.float(1, 2);
      assert.ok(f >= 1 && f < 2);
    }
    assert.equal(seen.size, 6);
    const arr = [1, 2, 3, 4, 5, 6, 7, 8];
    const sh = r.shuffle([...arr]);
    assert.deepEqual([...sh].sort(), arr);
    assert.ok(arr.includes(r.pick(arr)));
    assert.throws(() => r.int(3, 2), RangeError);
    assert.throws(() => r.pick([]), RangeError);
  });
});

describe("shapes scenes", () => {
  it("same seed and index → identical bytes; other seeds differ; indices are independent", () => {
    for (const i of [0, 1, 17, 123456]) {
      const a = sample(7, i);
      const b = sample(7, i);
      assert.deepEqual(a.scene.image.data, b.scene.image.data);
      assert.deepEqual(a.qa, b.qa);
      assert.deepEqual(
        a.scene.objects.map((o) => o.mask),
        b.scene.objects.map((o) => o.mask),
      );
      const c = sample(8, i);
      assert.notDeepEqual(a.scene.image.data, c.scene.image.data);
    }
    assert.notDeepEqual(sample(7, 0).scene.image.data, sample(7, 1).scene.image.data);
    // Generating other samples first does not change a given index.
    const late = sample(3, 50);
    for (let i = 0; i < 5; i++) sample(3, i);
    assert.deepEqual(sample(3, 50).scene.image.data, late.scene.image.data);
  });

  it("matches the recorded data-set fingerprint (update deliberately when the generator changes)", () => {
    let h = 0x811c9dc5;
    const qa: string[] = [];
    for (let i = 0; i < 8; i++) {
      const s = sample(0, i);
      h = fnv1a(s.scene.image.data, h);
      qa.push(`${s.qa.question}=${s.qa.answer}`);
    }
    assert.equal(qa[0], "What is the color of the circle?=yellow");
    assert.equal(h.toString(16), FINGERPRINT);
  });

  it("masks and boxes match exactly what is drawn", () => {
    let occluded = 0;
    let textured = 0;
    for (const scene of scenes(11, 300)) {
      const n = scene.size;
      assert.equal(n, IMAGE_SIZE);
      assert.equal(scene.image.data.length, n * n * 3);
      assert.ok(scene.objects.length >= 1 && scene.objects.length <= 4);
      if (scene.background === "textured") textured++;
      const owner = new Int16Array(n * n).fill(-1);
      scene.objects.forEach((o, i) => {
        assert.equal(o.mask.length, n * n);
        let area = 0;
        let x0 = n;
        let y0 = n;
        let x1 = -1;
        let y1 = -1;
        let sx = 0;
        let sy = 0;
        for (let k = 0; k < n * n; k++) {
          if (!o.mask[k]) continue;
          assert.equal(owner[k], -1, "masks overlap");
          owner[k] = i;
          area++;
          const x = k % n;
          const y = Math.floor(k / n);
          x0 = Math.min(x0, x);
          y0 = Math.min(y0, y);
          x1 = Math.max(x1, x);
          y1 = Math.max(y1, y);
          sx += x + 0.5;
          sy += y + 0.5;
          const p = k * 3;
          assert.deepEqual([scene.image.data[p], scene.image.data[p + 1], scene.image.data[p + 2]], o.rgb);
        }
        assert.ok(area > 0, "visible area > 0");
        assert.equal(o.area, area);
        assert.deepEqual(o.box, [x0, y0, x1 + 1, y1 + 1]);
        assert.ok(Math.abs(o.centroid[0] - sx / area) < 1e-9 && Math.abs(o.centroid[1] - sy / area) < 1e-9);
        assert.ok(o.fullArea >= area && area >= 0.6 * o.fullArea);
        // Distinct shape/colour pairs, so "the <colour> <shape>" names one object.
        assert.equal(scene.objects.filter((p) => p.shape === o.shape && p.color === o.color).length, 1);
      });
      // Occlusion: what an object lost is exactly what later objects cover.
      scene.objects.forEach((o, i) => {
        const full = rasterizeShape(o.shape, o.cx, o.cy, o.size, o.rotation, n);
        let fullArea = 0;
        for (let k = 0; k < n * n; k++) {
          if (full[k]) fullArea++;
          if (o.mask[k]) assert.equal(full[k], 1);
          else if (full[k]) assert.ok(owner[k]! > i, "hidden pixel not covered by a later object");
        }
        assert.equal(fullArea, o.fullArea);
        if (o.area < o.fullArea) occluded++;
      });
      // Every non-object pixel is low-saturation background; every object pixel is saturated.
      for (let k = 0; k < n * n; k++) {
        const p = k * 3;
        const r = scene.image.data[p]!;
        const g = scene.image.data[p + 1]!;
        const b = scene.image.data[p + 2]!;
        const chroma = Math.max(r, g, b) - Math.min(r, g, b);
        if (owner[k] === -1) assert.ok(chroma <= BACKGROUND_MAX_CHROMA, `background chroma ${chroma}`);
        else assert.ok(chroma > 2 * BACKGROUND_MAX_CHROMA, `object chroma ${chroma}`);
      }
    }
    assert.ok(occluded > 0, "some scenes have overlap");
    assert.ok(textured > 90 && textured < 210, `textured backgrounds: ${textured}/300`);
  });

  it("rotation 0 gives the same layout with upright shapes (squares fill their boxes)", () => {
    let squares = 0;
    for (let seed = 0; seed < 40; seed++) {
      const free = generateScene(new Rng(seed));
      const upright = generateScene(new Rng(seed), { rotation: 0 });
      assert.deepEqual(
        upright.objects.map((o) => [o.shape, o.color, o.cx, o.cy, o.size]),
        free.objects.map((o) => [o.shape, o.color, o.cx, o.cy, o.size]),
      );
      for (const o of upright.objects) {
        assert.equal(o.rotation, 0);
        if (o.shape !== "square" || o.area !== o.fullArea) continue;
        squares++;
        const [x0, y0, x1, y1] = o.box;
        assert.equal(o.area, (x1 - x0) * (y1 - y0), "an upright, unoccluded square is its box");
      }
    }
    assert.ok(squares > 5, `${squares} unoccluded squares`);
    assert.throws(() => generateScene(new Rng(1), { rotation: 2 }), /rotation/);
  });

  it("patch coverage sums to the visible area on the 8×8 grid", () => {
    const s = sample(5, 3);
    const cov = objectPatchCoverage(s.scene, 0);
    assert.equal(cov.length, 64);
    let total = 0;
    for (const v of cov) {
      assert.ok(v >= 0 && v <= 1);
      total += v * SHAPES_PATCH_SIZE * SHAPES_PATCH_SIZE;
    }
    assert.ok(Math.abs(total - s.scene.objects[0]!.area) < 1e-3);
    const m = new Uint8Array(IMAGE_SIZE * IMAGE_SIZE);
    for (let y = 14; y < 28; y++) for (let x = 28; x < 42; x++) m[y * IMAGE_SIZE + x] = 1;
    m[0] = 1;
    const c = patchCoverage(m, IMAGE_SIZE);
    assert.equal(c[1 * 8 + 2], 1);
    assert.equal(c[0], Math.fround(1 / 196));
    assert.ok(Math.abs(c.reduce((a, v) => a + v, 0) - (1 + 1 / 196)) < 1e-6);
    const t = targetPatchCoverage(s);
    if (s.qa.target_object === null) assert.equal(t, null);
    else assert.deepEqual(t, objectPatchCoverage(s.scene, s.qa.target_object));
    const rm = relatedMask(s);
    assert.equal(rm === null, s.qa.related_objects.length === 0);
  });
});

/** Independent re-derivation of a question's answer from the object list and masks. */
function checkQA(scene: Scene, qa: QA): void {
  const words = qa.question.toLowerCase().match(/[a-z]+/g) ?? [];
  const shapes = words.filter((w) => (SHAPE_NAMES as readonly string[]).includes(w));
  const colors = words.filter((w) => (COLOR_NAMES as readonly string[]).includes(w));
  const objs = scene.objects;
  const vars = { shape: shapes[0], color: colors[0], shape1: shapes[0], shape2: shapes[1] };
  assert.equal(fillTemplate(QUESTION_TEMPLATES[qa.kind][qa.template]!, vars), qa.question);
  assert.ok(ANSWER_WORDS.includes(qa.answer), qa.answer);
  assert.equal(qa.answer, qa.answer.toLowerCase());
  const only = (pred: (o: Scene["objects"][number]) => boolean) => {
    const idx = objs.flatMap((o, i) => (pred(o) ? [i] : []));
    assert.equal(idx.length, 1, `"${qa.question}" must name exactly one object`);
    return idx[0]!;
  };
  const area = (i: number) => objs[i]!.mask.reduce((a, v) => a + v, 0);
  switch (qa.kind) {
    case "color": {
      assert.equal(shapes.length, 1);
      const i = only((o) => o.shape === shapes[0]);
      assert.equal(qa.answer, objs[i]!.color);
      assert.equal(qa.target_object, i);
      break;
    }
    case "shape": {
      assert.equal(colors.length, 1);
      const i = only((o) => o.color === colors[0]);
      assert.equal(qa.answer, objs[i]!.shape);
      assert.equal(qa.target_object, i);
      break;
    }
    case "exists": {
      const i = objs.findIndex((o) => o.shape === shapes[0] && o.color === colors[0]);
      assert.equal(qa.answer, i >= 0 ? "yes" : "no");
      assert.equal(qa.target_object, i >= 0 ? i : null);
      break;
    }
    case "count":
      assert.equal(qa.answer, ["one", "two", "three", "four"][objs.length - 1]);
      assert.equal(qa.target_object, null);
      break;
    case "where": {
      const i = only((o) => o.shape === shapes[0] && o.color === colors[0]);
      const n = scene.size;
      let sx = 0;
      let sy = 0;
      objs[i]!.mask.forEach((v, k) => {
        if (v) {
          sx += (k % n) + 0.5;
          sy += Math.floor(k / n) + 0.5;
        }
      });
      const dx = sx / area(i) - n / 2;
      const dy = sy / area(i) - n / 2;
      const major = Math.max(Math.abs(dx), Math.abs(dy));
      const minor = Math.min(Math.abs(dx), Math.abs(dy));
      // At 112 px: at least 16 px off-centre along one axis, the other within 6 px or ≤ a third of it.
      assert.ok(major >= 16, `${qa.question} offset ${major}`);
      assert.ok(minor <= 6 || minor * 3 <= major, `${qa.question} offsets ${dx}, ${dy}`);
      const side = Math.abs(dx) > Math.abs(dy) ? (dx < 0 ? "left" : "right") : dy < 0 ? "top" : "bottom";
      assert.equal(qa.answer, side);
      assert.equal(qa.target_object, i);
      break;
    }
    case "bigger": {
      assert.equal(shapes.length, 2);
      assert.notEqual(shapes[0], shapes[1]);
      const a = only((o) => o.shape === shapes[0]);
      const b = only((o) => o.shape === shapes[1]);
      const [big, small] = area(a) > area(b) ? [a, b] : [b, a];
      assert.ok(area(big) >= 1.5 * area(small));
      assert.equal(qa.answer, objs[big]!.shape);
      assert.equal(qa.target_object, big);
      assert.deepEqual([...qa.related_objects].sort(), [a, b].sort());
      break;
    }
  }
  if (qa.target_object !== null) assert.ok(qa.related_objects.includes(qa.target_object));
}

describe("shapes questions", () => {
  it("every generated question is unambiguous and its answer recomputes from the objects", () => {
    const rng = new Rng(99);
    for (const scene of scenes(21, 300)) {
      const qs = questionsFor(scene, rng);
      for (const qa of qs) checkQA(scene, qa);
      // Completeness: a colour question for every unique shape, a shape question for every unique colour.
      const uniqueShapes = SHAPE_NAMES.filter((s) => scene.objects.filter((o) => o.shape === s).length === 1);
      const uniqueColors = COLOR_NAMES.filter((c) => scene.objects.filter((o) => o.color === c).length === 1);
      assert.equal(qs.filter((q) => q.kind === "color").length, uniqueShapes.length);
      assert.equal(qs.filter((q) => q.kind === "shape").length, uniqueColors.length);
      assert.equal(qs.filter((q) => q.kind === "count").length, 1);
      const yes = qs.filter((q) => q.kind === "exists" && q.answer === "yes").length;
      const no = qs.filter((q) => q.kind === "exists" && q.answer === "no").length;
      assert.equal(yes, scene.objects.length);
      assert.equal(no, scene.objects.length);
      checkQA(scene, sampleQA(scene, rng));
    }
  });

  it("answer distribution over 500 samples is not degenerate", () => {
    const byKind = new Map<string, Map<string, number>>();
    const templates = new Set<string>();
    for (let i = 0; i < 500; i++) {
      const { scene, qa } = sample(1234, i);
      checkQA(scene, qa);
      const m = byKind.get(qa.kind) ?? new Map<string, number>();
      m.set(qa.answer, (m.get(qa.answer) ?? 0) + 1);
      byKind.set(qa.kind, m);
      templates.add(`${qa.kind}/${qa.template}`);
    }
    const total = (k: string) => [...(byKind.get(k)?.values() ?? [])].reduce((a, v) => a + v, 0);
    for (const k of QUESTION_KINDS) assert.ok(total(k) >= 40, `${k}: ${total(k)} of 500`);
    const exists = byKind.get("exists")!;
    const yesShare = (exists.get("yes") ?? 0) / total("exists");
    assert.ok(yesShare > 0.35 && yesShare < 0.65, `yes share ${yesShare}`);
    assert.equal(byKind.get("count")!.size, 4);
    assert.equal(byKind.get("where")!.size, 4);
    assert.equal(byKind.get("color")!.size, 6);
    assert.equal(byKind.get("shape")!.size, 4);
    assert.ok(byKind.get("bigger")!.size >= 3);
    for (const m of byKind.values()) {
      const counts = [...m.values()];
      const sum = counts.reduce((a, v) => a + v, 0);
      assert.ok(Math.max(...counts) / sum < 0.6, "one answer dominates its kind");
    }
    assert.ok(templates.size >= 20, `only ${templates.size} paraphrases used`);
  });
});

describe("shapes tokenizer", () => {
  const files = buildShapesTokenizer();
  const tok = new Tokenizer(files.tokenizer, files.tokenizerConfig);

  function allQuestionTexts(): string[] {
    const out: string[] = [];
    for (const kind of QUESTION_KINDS) {
      for (const t of QUESTION_TEMPLATES[kind]) {
        for (const shape of SHAPE_NAMES) {
          for (const color of COLOR_NAMES) {
            out.push(
              fillTemplate(t, {
                shape,
                color,
                shape1: shape,
                shape2: SHAPE_NAMES[(SHAPE_NAMES.indexOf(shape) + 1) % 4],
              }),
            );
          }
        }
      }
    }
    return [...new Set(out)];
  }

  it("has the special tokens at fixed ids and a contiguous vocabulary", () => {
    assert.deepEqual(
      SPECIAL_TOKENS.map((t) => tok.token_to_id(t)),
      [UNK_TOKEN_ID, BOS_TOKEN_ID, EOS_TOKEN_ID, PAD_TOKEN_ID, IMAGE_TOKEN_ID],
    );
    assert.equal(tok.id_to_token(IMAGE_TOKEN_ID), "<image>");
    const ids = Object.values(files.vocab).sort((a, b) => a - b);
    assert.deepEqual(
      ids,
      ids.map((_, i) => i),
    );
    assert.ok(ids.length < 100, `vocab size ${ids.length}`);
    assert.equal(files.tokenizerConfig.chat_template, SHAPES_CHAT_TEMPLATE);
    const fixtureCfg = JSON.parse(
      fs.readFileSync(
        path.join(ROOT, "test", "fixtures", "llava-tiny-llama", "tokenizer_config.json"),
        "utf8",
      ),
    );
    assert.equal(SHAPES_CHAT_TEMPLATE, fixtureCfg.chat_template);
    // JSON round trip gives the same tokenizer.
    const again = new Tokenizer(JSON.parse(JSON.stringify(files.tokenizer)), files.tokenizerConfig);
    assert.deepEqual(
      again.encode("What color is the circle?").ids,
      tok.encode("What color is the circle?").ids,
    );
  });

  it("encodes every question and answer without <unk> and decodes them back", () => {
    const texts = [...allQuestionTexts()];
    for (let i = 0; i < 200; i++) texts.push(sample(77, i).qa.question);
    for (const q of texts) {
      const enc = tok.encode(q);
      assert.equal(enc.ids[0], BOS_TOKEN_ID, q);
      assert.ok(!enc.ids.includes(UNK_TOKEN_ID), `<unk> in "${q}": ${enc.tokens.join(" ")}`);
      assert.equal(tok.decode(enc.ids, { skip_special_tokens: true }), q.toLowerCase());
    }
    assert.deepEqual(tok.encode("What color is the circle?", { add_special_tokens: false }).tokens, [
      "what",
      "color",
      "is",
      "the",
      "circle",
      "?",
    ]);
    for (const a of ANSWER_WORDS) {
      const ids = tok.encode(a, { add_special_tokens: false }).ids;
      assert.equal(ids.length, 1, a);
      assert.notEqual(ids[0], UNK_TOKEN_ID);
      assert.equal(tok.decode([...ids, EOS_TOKEN_ID], { skip_special_tokens: true }), a);
    }
    assert.equal(tok.encode("a zebra", { add_special_tokens: false }).ids[1], UNK_TOKEN_ID);
  });

  it("round-trips through TextProcessor with a contiguous image span", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "shapes-tok-"));
    try {
      writeShapesTokenizer(dir);
      for (const name of ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]) {
        assert.ok(fs.existsSync(path.join(dir, name)), name);
      }
      fs.writeFileSync(path.join(dir, "config.json"), JSON.stringify({ image_token_index: IMAGE_TOKEN_ID }));
      const tp = TextProcessor.load(dir, IMAGE_TOKEN_ID);
      assert.ok(tp.hasChatTemplate);
      assert.equal(tp.special("bos_token"), "<s>");
      for (let i = 0; i < 30; i++) {
        const q = sample(5, i).qa.question;
        const enc = tp.encodePrompt(q, 64);
        assert.equal(enc.chatText, `USER: <image>\n${q} ASSISTANT:`);
        assert.equal(enc.inputIds[0], BOS_TOKEN_ID);
        assert.equal(enc.imageTokenStart, 3); // <s> user :
        assert.equal(enc.imageTokenCount, 64);
        for (let k = 0; k < enc.inputIds.length; k++) {
          const inSpan: boolean = k >= enc.imageTokenStart && k < enc.imageTokenStart + 64;
          assert.equal(enc.inputIds[k] === IMAGE_TOKEN_ID, inSpan, `position ${k}`);
        }
        assert.ok(!enc.inputIds.includes(UNK_TOKEN_ID));
        assert.equal(tp.decode(enc.inputIds, true), `user: ${q.toLowerCase()} assistant:`);
        const tail = enc.inputIds.slice(enc.imageTokenStart + 64);
        assert.equal(tp.idToToken(tail[tail.length - 2]!), "assistant");
        assert.equal(tp.idToToken(tail[tail.length - 1]!), ":");
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

const FINGERPRINT = "8cd3d411";
