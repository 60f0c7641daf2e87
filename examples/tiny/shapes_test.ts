import assert from "node:assert/strict";
import { join } from "node:path";
import {
  buildShapesDataset,
  type ExistenceState,
  itemSeed,
  numPatchClasses,
  objectsOverlap,
  parseShapesConfig,
  placeWords,
  questionTurns,
  randomScene,
  sceneCaption,
  sceneQuestion,
  SHAPES_CATEGORIES,
  type ShapesConfig,
  writeShapesDataset,
} from "./shapes.ts";
import { COLOUR_RGB, patchLabels, renderScene, type Scene, type SceneObject } from "./shapes_render.ts";
import { rng } from "../../core/random.ts";
import { readLlavaRows } from "../../data/llava_json.ts";
import { readImage } from "../../data/image.ts";
import { loadQuestions, type Question } from "../../eval/questions.ts";
import { expectedAnswer } from "../../eval/score.ts";
import { questionPrompt } from "../../trainers/evaluate.ts";

/** An object placed in pixels of a 32-px image: top-left (px, py), side pw. */
function obj(shape: SceneObject["shape"], colour: SceneObject["colour"], px: number, py: number, pw: number) {
  return {
    shape,
    colour,
    size: pw >= 12 ? "large" : "small",
    x: px / 32,
    y: py / 32,
    w: pw / 32,
  } as SceneObject;
}

const LABELS = {
  colours: ["red", "green", "blue", "yellow"],
  shapes: ["square", "circle", "triangle"],
} as const;
const scene = (...objects: SceneObject[]): Scene => ({ objects, ...LABELS });

const small = (over: Partial<ShapesConfig> = {}): ShapesConfig =>
  parseShapesConfig({ stage1Images: 3, stage2Images: 3, stage2TextRows: 2, evalImages: 4, ...over });

Deno.test("parseShapesConfig fills defaults and names bad fields", () => {
  const cfg = parseShapesConfig({});
  assert.equal(cfg.imageSize, 32);
  assert.equal(cfg.maxObjects, 3);
  assert.deepEqual(cfg.shapes, ["square", "circle", "triangle"]);
  assert.equal(numPatchClasses(cfg), 1 + 6 * 3);
  assert.throws(
    () => parseShapesConfig({ maxObjects: 9 }, "run.shapes"),
    /run\.shapes\.maxObjects: .*expected number to be <=6 \(got 9\)/,
  );
  assert.throws(
    () => parseShapesConfig({ colours: ["red", "teal"] }),
    /shapes\.colours\[1\]: .*one of "red".* \(got "teal"\)/,
  );
  assert.throws(
    () => parseShapesConfig({ shapes: ["circle", "circle"] }),
    /shapes\.shapes: names a shape twice/,
  );
  assert.throws(() => parseShapesConfig({ imageSize: 16 }), /shapes\.imageSize: .*>=24 \(got 16\)/);
  assert.throws(
    () => parseShapesConfig({ seeds: 1 }),
    /shapes\.seeds: unknown field; allowed fields: seed, imageSize/,
  );
  assert.throws(
    () => parseShapesConfig({ colours: ["red", "blue"], shapes: ["circle"], maxObjects: 2 }),
    /2 colours x 1 shapes give only 2 kinds of object for up to 2 objects/,
  );
});

Deno.test("renderScene draws a square, a circle and a triangle with hard edges", () => {
  const s = scene(
    obj("square", "red", 8, 8, 8),
    obj("circle", "blue", 20, 2, 10),
    obj("triangle", "green", 2, 20, 8),
  );
  const { rgb, objectMap } = renderScene(s, 32);
  assert.equal(rgb.length, 32 * 32 * 3);
  const at = (i: number, j: number) => objectMap[j * 32 + i];
  const colour = (i: number, j: number) => Array.from(rgb.subarray(3 * (j * 32 + i), 3 * (j * 32 + i) + 3));
  // the square covers pixels 8..15 on both axes, exactly
  for (let j = 0; j < 32; j++) {
    for (let i = 0; i < 20; i++) {
      if (j < 20) assert.equal(at(i, j) === 0, i >= 8 && i < 16 && j >= 8 && j < 16, `pixel (${i}, ${j})`);
    }
  }
  assert.deepEqual(colour(8, 8), [...COLOUR_RGB.red]);
  assert.deepEqual(colour(0, 0), [0, 0, 0]);
  // circle centre (25, 7), radius 5: centre pixel in, box corners out, edge midpoints in
  assert.equal(at(24, 6), 1);
  assert.equal(at(20, 2), -1);
  assert.equal(at(29, 11), -1);
  assert.equal(at(20, 6), 1); // centre (20.5, 6.5): 4.5 left of and 0.5 above the centre, inside r = 5
  assert.deepEqual(colour(24, 6), [...COLOUR_RGB.blue]);
  // triangle, apex at the top centre (x = 6): the top row has only the two middle pixels, the bottom row all 8
  const row = (j: number) => Array.from({ length: 12 }, (_, i) => at(i, j) === 2 ? 1 : 0).join("");
  assert.equal(row(20), "000000000000");
  assert.equal(row(21), "000001100000"); // centres 5.5 and 6.5 at depth 1.5: |u - 6| <= 0.75
  assert.equal(row(27), "001111111100");
  // a disc of radius 5 px holds about 25 pi pixels
  const circle = objectMap.filter((k) => k === 1).length;
  assert.ok(Math.abs(circle - 25 * Math.PI) < 8, `circle has ${circle} pixels`);
});

Deno.test("patchLabels: background-majority patches are 0, others the majority object's class", () => {
  // 32 px, 8-px patches (4 x 4). Red square fills patch (0,0) exactly; blue square 12..23 covers
  // patch (1,1) by 16/64, patches (2,1) and (1,2) by 32/64 and patch (2,2) fully.
  // Patch (3,0): a green 3-px square (9 px) and a yellow 5-px square (25 px): 34/64 covered, yellow most.
  const s = scene(
    obj("square", "red", 0, 0, 8),
    obj("square", "blue", 12, 12, 12),
    obj("square", "green", 24, 0, 3),
    obj("square", "yellow", 27, 3, 5),
  );
  const red = 1, blue = 1 + 2 * 3, yellow = 1 + 3 * 3;
  assert.deepEqual(Array.from(patchLabels(s, 32, 8)), [
    red,
    0,
    0,
    yellow,
    0,
    0,
    blue,
    0,
    0,
    blue,
    blue,
    0,
    0,
    0,
    0,
    0,
  ]);
  // with a lower cover threshold the quarter-covered patch counts too
  assert.equal(patchLabels(s, 32, 8, 0.25)[5], blue);
  // at 64 px the same scene gives the same labels on 16-px patches
  assert.deepEqual(patchLabels(s, 64, 16), patchLabels(s, 32, 8));
  assert.throws(() => patchLabels(s, 32, 5), /must be a positive integer that divides size/);
  assert.throws(
    () => patchLabels(scene(obj("circle", "purple", 0, 0, 8)), 32, 8),
    /outside the scene's label/,
  );
});

Deno.test("random scenes: 1..maxObjects objects, inside the image, never overlapping, at least 6 px", () => {
  for (const maxObjects of [3, 6]) {
    const cfg = parseShapesConfig({ maxObjects });
    const counts = new Set<number>();
    for (let i = 0; i < 150; i++) {
      const s = randomScene(cfg, rng(itemSeed(7, 0, i)));
      counts.add(s.objects.length);
      assert.ok(s.objects.length >= 1 && s.objects.length <= maxObjects);
      const { objectMap } = renderScene(s, 32);
      s.objects.forEach((o, k) => {
        assert.ok(o.x >= 0 && o.y >= 0 && o.x + o.w <= 1 && o.y + o.w <= 1, `object ${k} leaves the image`);
        assert.ok(o.w * 32 >= 6, `object ${k} is ${o.w * 32} px`);
        assert.ok(objectMap.some((m) => m === k), `object ${k} is not drawn`);
        for (let l = 0; l < k; l++) {
          const a = s.objects[l];
          const apart = a.x + a.w < o.x || o.x + o.w < a.x || a.y + a.w < o.y || o.y + o.w < a.y;
          assert.ok(apart && !objectsOverlap(a, o), `scene ${i}: objects ${l} and ${k} overlap`);
        }
      });
    }
    assert.equal(counts.size, maxObjects, `object counts seen: ${[...counts]}`);
  }
});

Deno.test("random scenes on a grid: each object centred on the fewest whole cells that hold it", () => {
  const cfg = parseShapesConfig({ grid: 4 });
  const sizes = new Set<number>();
  for (let i = 0; i < 100; i++) {
    const s = randomScene(cfg, rng(itemSeed(3, 0, i)));
    for (const o of s.objects) {
      const cells = Math.ceil(o.w * 4); // small (1/4): 1 cell; large (3/8): 2 x 2 cells
      sizes.add(cells);
      const start = (o.x + o.w / 2 - cells / 8) * 4, top = (o.y + o.w / 2 - cells / 8) * 4;
      assert.ok(
        Number.isInteger(start) && Number.isInteger(top),
        `object at ${o.x}, ${o.y} is off the cells`,
      );
      assert.ok(start >= 0 && top >= 0 && start + cells <= 4 && top + cells <= 4);
    }
    for (let k = 1; k < s.objects.length; k++) {
      for (let l = 0; l < k; l++) assert.ok(!objectsOverlap(s.objects[l], s.objects[k]));
    }
  }
  assert.deepEqual([...sizes].sort(), [1, 2]);
  // Free placement (the default) puts objects off the cells.
  const free = Array.from(
    { length: 20 },
    (_, i) => randomScene(parseShapesConfig({}), rng(itemSeed(3, 0, i))),
  );
  assert.ok(free.some((s) => s.objects.some((o) => !Number.isInteger((o.x + o.w / 2) * 8))));
  assert.throws(
    () => parseShapesConfig({ grid: 3 }),
    /shapes\.grid: expected 0 \(free placement, as when absent\), 2, 4, 8 or 16 .* \(got 3\)/,
  );
});

Deno.test("sceneCaption counts objects that share colour and shape", () => {
  const s = scene(
    obj("triangle", "green", 20, 4, 8),
    obj("circle", "red", 1, 10, 12),
    obj("triangle", "green", 22, 20, 8),
  );
  assert.equal(sceneCaption(s), "a large red circle on the left and two green triangles");
  const three = scene(
    obj("square", "blue", 1, 1, 8),
    obj("square", "blue", 12, 12, 8),
    obj("square", "blue", 23, 23, 8),
    obj("circle", "yellow", 23, 1, 8),
  );
  assert.equal(sceneCaption(three), "three blue squares and a small yellow circle at the top right");
  assert.equal(sceneCaption(scene(obj("square", "red", 12, 12, 8))), "a small red square in the center");
  assert.equal(placeWords(obj("square", "red", 12, 24, 8)), "at the bottom");
  assert.equal(placeWords(obj("square", "red", 1, 1, 8)), "at the top left");
});

Deno.test("sceneQuestion: each category answers from the scene, or declines when ambiguous", () => {
  const s = scene(
    obj("circle", "red", 1, 1, 8), // top left
    obj("square", "blue", 20, 20, 8), // bottom right
    obj("square", "red", 20, 1, 8), // top right
  );
  const r = rng(1);
  for (let t = 0; t < 20; t++) {
    const color = sceneQuestion(s, "color", r)!;
    assert.deepEqual([color.question, color.answer], ["What color is the circle?", "red"]); // squares: two colours
    const shape = sceneQuestion(s, "shape", r)!;
    assert.deepEqual([shape.question, shape.answer], ["What shape is the blue object?", "square"]);
    const count = sceneQuestion(s, "count", r)!;
    const want: Record<string, string> = {
      "How many objects are there?": "3",
      "How many squares are there?": "2",
      "How many circles are there?": "1",
      "How many triangles are there?": "0",
    };
    assert.equal(count.answer, want[count.question], count.question);
    const pos = sceneQuestion(s, "position", r)!;
    assert.equal(pos.type, "choice");
    const m = /^Is the (\w+ \w+) (\w+) or (\w+)(?: of)? the (\w+ \w+)\?$/.exec(pos.question);
    assert.ok(m, pos.question);
    assert.deepEqual(pos.choices, [m[2], m[3]]);
    const where: Record<string, [number, number]> = {
      "red circle": [0, 0],
      "blue square": [1, 1],
      "red square": [1, 0],
    };
    const [a, b] = [where[m[1]], where[m[4]]];
    const expected = m[2] === "left" || m[2] === "right"
      ? (a[0] < b[0] ? "left" : "right")
      : (a[1] < b[1] ? "above" : "below");
    assert.notEqual(
      a[m[2] === "left" || m[2] === "right" ? 0 : 1],
      b[m[2] === "left" || m[2] === "right" ? 0 : 1],
    );
    assert.equal(pos.answer, expected, pos.question);
  }
  // a lone object: no position question; two same-shape objects of one colour: no colour question for it
  assert.equal(sceneQuestion(scene(obj("circle", "red", 1, 1, 8)), "position", r), null);
  const twins = scene(obj("circle", "red", 1, 1, 8), obj("circle", "red", 20, 20, 8));
  assert.equal(sceneQuestion(twins, "color", r), null);
  assert.equal(sceneQuestion(twins, "position", r), null);
  // every colour and shape present: a "no" can only be adversarial
  const all: ExistenceState = { adversarial: 0, random: 0 };
  const full: Scene = {
    objects: [obj("circle", "red", 1, 1, 8), obj("square", "blue", 20, 20, 8)],
    colours: ["red", "blue"],
    shapes: ["circle", "square"],
  };
  for (let t = 0; t < 4; t++) {
    const q = sceneQuestion(full, "existence", r, false, all)!;
    assert.equal(q.answer, "no");
    assert.ok(
      ["Is there a red square in the image?", "Is there a blue circle in the image?"].includes(q.question),
    );
  }
  assert.deepEqual(all, { adversarial: 4, random: 0 });
  assert.equal(sceneQuestion(scene(obj("circle", "red", 1, 1, 8)), "existence", r, false)!.answer, "no");
});

/** The answer a question about `s` should have, worked out from the question's words alone. */
function answerFromScene(q: Question, s: Scene): string {
  const o = s.objects;
  const centre = (k: string) => {
    const hit = o.filter((x) => `${x.colour} ${x.shape}` === k);
    assert.equal(hit.length, 1, `${q.id}: "${k}" must name one object`);
    return [hit[0].x + hit[0].w / 2, hit[0].y + hit[0].w / 2];
  };
  let m;
  if ((m = /^What color is the (\w+)\?$/.exec(q.question))) {
    const hit = o.filter((x) => x.shape === m![1]);
    assert.equal(hit.length, 1, `${q.id}: ambiguous`);
    return hit[0].colour;
  }
  if ((m = /^What shape is the (\w+) object\?$/.exec(q.question))) {
    const hit = o.filter((x) => x.colour === m![1]);
    assert.equal(hit.length, 1, `${q.id}: ambiguous`);
    return hit[0].shape;
  }
  if (q.question === "How many objects are there?") return String(o.length);
  if ((m = /^How many (\w+)s are there\?$/.exec(q.question))) {
    return String(o.filter((x) => x.shape === m![1]).length);
  }
  if ((m = /^Is there an? (\w+) (\w+) in the image\?$/.exec(q.question))) {
    return o.some((x) => x.colour === m![1] && x.shape === m![2]) ? "yes" : "no";
  }
  if (
    (m = /^Is the (\w+ \w+) (left|right|above|below) or (left|right|above|below)(?: of)? the (\w+ \w+)\?$/
      .exec(q.question))
  ) {
    const [a, b] = [centre(m[1]), centre(m[4])];
    return ["left", "right"].includes(m[2])
      ? (a[0] < b[0] ? "left" : "right")
      : (a[1] < b[1] ? "above" : "below");
  }
  throw new Error(`${q.id}: unexpected question ${q.question}`);
}

Deno.test("the evaluation set: every category, yes/no balanced, answers true to the scene", () => {
  const d = buildShapesDataset(parseShapesConfig({ stage1Images: 0, stage2Images: 0, evalImages: 60 }));
  const scenes = new Map(d.images.map((im) => [im.image, im.scene]));
  const byCategory = new Map<string, Question[]>();
  for (const q of d.eval) byCategory.set(q.category!, [...(byCategory.get(q.category!) ?? []), q]);
  assert.deepEqual([...byCategory.keys()].sort(), [...SHAPES_CATEGORIES].sort());
  const yesno = byCategory.get("existence")!;
  assert.equal(yesno.length, 120);
  assert.equal(yesno.filter((q) => q.answer === "yes").length, 60);
  let adversarial = 0;
  for (const q of d.eval) {
    const s = scenes.get(q.image!)!;
    assert.equal(expectedAnswer(q), expectedAnswer({ ...q, answer: answerFromScene(q, s) }), q.id);
    if (q.type === "choice") assert.ok(q.choices!.includes(q.answer));
    if (q.category === "existence" && q.answer === "no") {
      const [, c, sh] = /^Is there an? (\w+) (\w+)/.exec(q.question)!;
      if (s.objects.some((x) => x.colour === c || x.shape === sh)) adversarial++;
    }
  }
  assert.ok(adversarial >= 24 && adversarial <= 36, `${adversarial} of 60 "no" questions are adversarial`);
  assert.equal(new Set(d.eval.map((q) => q.id)).size, d.eval.length);
  // held out: the evaluation's scenes come from their own seed stream, not the training ones
  const train = buildShapesDataset(parseShapesConfig({ stage1Images: 60, stage2Images: 60, evalImages: 0 }));
  const key = (im: { scene: Scene }) => JSON.stringify(im.scene.objects);
  assert.ok(
    d.images.every((im, i) => key(im) !== key(train.images[i]) && key(im) !== key(train.images[60 + i])),
  );
});

Deno.test("stage-2 conversations ask every category in the evaluation's prompt format", () => {
  const d = buildShapesDataset(
    parseShapesConfig({ stage1Images: 0, stage2Images: 80, stage2TextRows: 5, evalImages: 20 }),
  );
  const imageRows = d.stage2.filter((r) => r.image !== undefined);
  assert.equal(imageRows.length, 80);
  assert.equal(d.stage2.length - imageRows.length, 5);
  const humans = imageRows.flatMap((r) =>
    r.conversations.filter((t) => t.from === "human").map((t) => t.value)
  );
  for (const r of imageRows) {
    assert.ok(r.conversations[0].value.startsWith("<image>\n"), r.id);
    assert.ok(r.conversations.length >= 2 && r.conversations.length <= 6, r.id);
    assert.ok(r.conversations.slice(1).every((t) => !t.value.includes("<image>")));
  }
  for (
    const pattern of [
      /What color is/,
      /What shape is/,
      /How many/,
      /left or|right or|above or|below or/,
      /Is there/,
    ]
  ) {
    assert.ok(humans.some((h) => pattern.test(h)), `no training question matches ${pattern}`);
  }
  for (const r of d.stage2.filter((r) => r.image === undefined)) {
    assert.ok(!r.conversations[0].value.includes("<image>"));
  }
  // the training prompt of a question is the evaluation's prompt, and its answer scores as correct
  for (const q of d.eval) {
    const turns = questionTurns({ ...q, category: q.category as never });
    assert.equal(turns.human, questionPrompt(q));
    assert.equal(expectedAnswer({ ...q, answer: turns.gpt }), expectedAnswer(q), q.id);
  }
  // training yes/no answers are near even
  const answers = imageRows.flatMap((r) =>
    r.conversations.flatMap((t, i) =>
      i > 0 && r.conversations[i - 1].value.includes("Is there") ? [t.value] : []
    )
  );
  const yes = answers.filter((a) => a === "yes").length;
  assert.ok(
    answers.length > 10 && Math.abs(yes / answers.length - 0.5) < 0.25,
    `${yes} yes of ${answers.length}`,
  );
});

Deno.test("the data set is deterministic: same seed, same data; another seed, other data", () => {
  const a = buildShapesDataset(small());
  assert.deepEqual(buildShapesDataset(small()), a);
  const b = buildShapesDataset(small({ seed: 1 }));
  assert.notDeepEqual(b.stage1, a.stage1);
  assert.notDeepEqual(b.eval, a.eval);
  // a larger count keeps the rows made before
  const more = buildShapesDataset(small({ stage1Images: 6 }));
  assert.deepEqual(more.stage1.slice(0, 3), a.stage1);
  assert.deepEqual(more.eval, a.eval);
  assert.notEqual(itemSeed(0, 1, 0), itemSeed(0, 3, 0));
  assert.notEqual(itemSeed(0, 1, 0), itemSeed(1, 1, 0));
});

Deno.test("writeShapesDataset writes the same bytes twice and reads back as LLaVA rows and questions", async () => {
  const cfg = small();
  const [d1, d2, d3] = [await Deno.makeTempDir(), await Deno.makeTempDir(), await Deno.makeTempDir()];
  try {
    const f = await writeShapesDataset(d1, cfg);
    await writeShapesDataset(d2, cfg);
    await writeShapesDataset(d3, small({ seed: 5 }));
    assert.equal(f.images, 3 + 3 + 4);
    const names = ["stage1.json", "stage2.json", "eval.json", "corpus.txt"];
    const pngs = [...Deno.readDirSync(f.imagesDir)].map((e) => `images/${e.name}`).sort();
    assert.equal(pngs.length, 10);
    for (const name of [...names, ...pngs]) {
      assert.deepEqual(await Deno.readFile(join(d2, name)), await Deno.readFile(join(d1, name)), name);
    }
    assert.notDeepEqual(
      await Deno.readFile(join(d3, "stage1.json")),
      await Deno.readFile(join(d1, "stage1.json")),
    );

    const s1 = await readLlavaRows(f.stage1);
    assert.equal(s1.rows.length, 3);
    assert.deepEqual(s1.rows[0].conversations.map((t) => t.from), ["human", "gpt"]);
    assert.equal(s1.rows[0].conversations[0].value, "<image>");
    const s2 = await readLlavaRows(f.stage2);
    assert.equal(s2.rows.length, 3 + 2);
    const questions = await loadQuestions(f.eval);
    assert.ok(questions.length >= 4 * 3); // count and two existence questions per image at least

    // the images are the rendered scenes, pixel for pixel, at the rows' relative paths
    const data = buildShapesDataset(cfg);
    for (const { image, scene } of data.images) {
      const img = await readImage(join(d1, image));
      assert.equal(img.width, 32);
      assert.deepEqual(img.data, renderScene(scene, 32).rgb, image);
    }
    for (const row of [...s1.rows, ...s2.rows]) {
      if (row.image) assert.ok(pngs.includes(row.image), row.image);
    }
    for (const q of questions) assert.ok(pngs.includes(q.image!), q.id);

    // the corpus covers every word the evaluation asks and answers
    const corpus = await Deno.readTextFile(f.corpus);
    const lines = corpus.trimEnd().split("\n");
    assert.ok(lines.includes(data.stage1[0].conversations[1].value));
    assert.ok(!lines.includes("<image>"));
    const big = buildShapesDataset(
      parseShapesConfig({ stage1Images: 100, stage2Images: 100, evalImages: 20 }),
    );
    const vocab = new Set(big.corpus.join(" ").split(/[\s?.,']+/));
    for (const q of big.eval) {
      for (const w of `${q.question} ${q.answer}`.split(/[\s?.,']+/)) {
        assert.ok(vocab.has(w), `"${w}" (${q.id})`);
      }
    }
  } finally {
    for (const d of [d1, d2, d3]) await Deno.remove(d, { recursive: true });
  }
});
