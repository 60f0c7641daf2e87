/**
 * A deterministic data set of simple shape scenes for training and evaluating a small VLM from
 * scratch: stage-1 caption rows and stage-2 question-answer conversations in LLaVA's format, a typed
 * evaluation set on held-out scenes (eval/questions.ts), the text corpus for a tokenizer and a small
 * language model, and PNG images. Everything follows from the config's seed: each scene and each
 * row draws from its own seeded stream (stage, index), so the same config gives the same bytes on
 * every machine, and raising a count keeps the rows made before.
 *
 * ```ts ignore
 * const files = await writeShapesDataset("runs/shapes", parseShapesConfig({ seed: 1 }));
 * const { rows } = await readLlavaRows(files.stage1); // captions: "a large red circle on the left and ..."
 * const questions = await loadQuestions(files.eval); // color, shape, count, position, existence
 * ```
 * @module
 */

import { join } from "node:path";
import sharp from "sharp";
import { z } from "zod";
import { rng, shuffleInPlace } from "../../core/random.ts";
import { parseSchema } from "../../schema/parse.ts";
import type { Question, QuestionType } from "../../eval/questions.ts";
import { IMAGE_MARKER, type LlavaTurn } from "../../data/llava_json.ts";
import {
  COLOUR_NAMES,
  type ColourName,
  renderScene,
  type Scene,
  type SceneObject,
  SHAPE_KINDS,
  type ShapeKind,
  SIZE_EXTENT,
  SIZE_NAMES,
} from "./shapes_render.ts";

/** The shape data set's config (see {@linkcode parseShapesConfig} for the defaults). */
export interface ShapesConfig {
  /** Seed of every random choice (default 0). */
  seed: number;
  /** Image side S in pixels (default 32; at least 24, so that a small object spans 6 pixels or more). */
  imageSize: number;
  /** Stage-1 (caption) images (default 600). */
  stage1Images: number;
  /** Stage-2 (question-answer) images (default 600). */
  stage2Images: number;
  /** Stage-2 text-only rows, after the image rows (default 24). */
  stage2TextRows: number;
  /** Evaluation images, scenes held out from training (default 200). */
  evalImages: number;
  /** Most objects in a scene (default 3; a scene has 1 to maxObjects). */
  maxObjects: number;
  /** Most question-answer pairs in a stage-2 conversation (default 3; a row has 1 to maxTurns). */
  maxTurns: number;
  /** The colours objects take (default red, green, blue, yellow, purple, orange). */
  colours: ColourName[];
  /** The shapes objects take (default square, circle, triangle). */
  shapes: ShapeKind[];
  /**
   * Cells per image side that objects snap to (absent or 0: anywhere on a 1/64 grid). With G > 0
   * each object is centred on the smallest block of whole cells that holds it; G = S / patch size puts
   * a small object exactly on one patch of a ViT, so that each patch shows whole shapes.
   */
  grid?: number;
}

const count = z.number().int().nonnegative();
const shapesSchema = z.strictObject({
  seed: z.number().int().nonnegative().max(0xffffffff).default(0),
  imageSize: z.number().int().min(24).max(1024).default(32),
  stage1Images: count.default(600),
  stage2Images: count.default(600),
  stage2TextRows: count.default(24),
  evalImages: count.default(200),
  maxObjects: z.number().int().min(1).max(6).default(3),
  maxTurns: z.number().int().min(1).max(8).default(3),
  colours: z.array(z.enum(COLOUR_NAMES as [ColourName, ...ColourName[]])).min(2)
    .refine((a) => new Set(a).size === a.length, { error: "names a colour twice; list each once" })
    .default(["red", "green", "blue", "yellow", "purple", "orange"]),
  shapes: z.array(z.enum(SHAPE_KINDS as [ShapeKind, ...ShapeKind[]])).min(1)
    .refine((a) => new Set(a).size === a.length, { error: "names a shape twice; list each once" })
    .default(["square", "circle", "triangle"]),
  grid: z.union([z.literal(0), z.literal(2), z.literal(4), z.literal(8), z.literal(16)], {
    error: "expected 0 (free placement, as when absent), 2, 4, 8 or 16 cells per image side",
  }).optional(),
});

/**
 * Validates a shapes config given as data and fills in the defaults. `path` names where the value
 * sits in errors (`shapes.maxObjects: Too big: expected number to be <=6 (got 9)`). The colour-shape
 * combinations must outnumber `maxObjects`, so that every scene has an absent object to ask about.
 *
 * @example
 * ```ts
 * const cfg = parseShapesConfig({ seed: 3, imageSize: 64 });
 * cfg.stage1Images; // 600
 * ```
 */
export function parseShapesConfig(value: unknown = {}, path = "shapes"): ShapesConfig {
  const cfg = parseSchema(shapesSchema, value, path);
  if (cfg.colours.length * cfg.shapes.length <= cfg.maxObjects) {
    throw new Error(
      `${path}: ${cfg.colours.length} colours x ${cfg.shapes.length} shapes give only ` +
        `${cfg.colours.length * cfg.shapes.length} kinds of object for up to ${cfg.maxObjects} objects; ` +
        `add colours or shapes, or lower maxObjects`,
    );
  }
  return cfg;
}

/** The number of patch classes of {@linkcode patchLabels}: background + every colour x shape. */
export function numPatchClasses(cfg: Pick<ShapesConfig, "colours" | "shapes">): number {
  return 1 + cfg.colours.length * cfg.shapes.length;
}

// ---------------------------------------------------------------------------------------------------
// Scenes

/** Positions and sizes are multiples of 1/64 of the image side (exact binary fractions). */
const GRID = 64;
/** The least gap between two objects' bounding boxes, and from the image edge, in grid units. */
const GAP = 2, MARGIN = 1;
/** Position tries per object, then scene tries, before giving up. */
const PLACE_TRIES = 200, SCENE_TRIES = 200;

/** A uniform pick from a non-empty list. */
function pick<T>(r: () => number, list: readonly T[]): T {
  return list[Math.floor(r() * list.length)];
}

/** The list in a random order (Fisher-Yates), a copy. */
function shuffled<T>(r: () => number, list: readonly T[]): T[] {
  return shuffleInPlace(list.slice(), r);
}

/** Whether the bounding boxes of `a` and `b` are closer than the gap (they overlap or touch). */
export function objectsOverlap(a: SceneObject, b: SceneObject): boolean {
  const g = GAP / GRID;
  return !(a.x + a.w + g <= b.x || b.x + b.w + g <= a.x || a.y + a.w + g <= b.y || b.y + b.w + g <= a.y);
}

/**
 * A random scene of 1 to `cfg.maxObjects` objects (uniform count, colour, shape, size; positions on
 * a 1/64 grid, or centred on blocks of `cfg.grid` cells), no two within 2/64 of each other, drawn
 * with `r`. Objects are placed by rejection sampling; a scene whose objects cannot all be placed is
 * drawn again with the same count.
 */
export function randomScene(
  cfg: Pick<ShapesConfig, "maxObjects" | "colours" | "shapes" | "grid">,
  r: () => number,
): Scene {
  const grid = cfg.grid ?? 0;
  const n = 1 + Math.floor(r() * cfg.maxObjects);
  for (let attempt = 0; attempt < SCENE_TRIES; attempt++) {
    const objects: SceneObject[] = [];
    while (objects.length < n) {
      const shape = pick(r, cfg.shapes), colour = pick(r, cfg.colours), size = pick(r, SIZE_NAMES);
      const side = SIZE_EXTENT[size] * GRID;
      // Free: any offset from the margin. On cells: a block of k cells, the object centred in it.
      const cell = grid > 0 ? GRID / grid : 1, k = grid > 0 ? Math.ceil(side / cell) : 1;
      const inset = grid > 0 ? (k * cell - side) / 2 : MARGIN;
      const span = grid > 0 ? grid - k + 1 : GRID - side - 2 * MARGIN + 1; // positions on each axis
      const at = () => (inset + Math.floor(r() * span) * cell) / GRID;
      let placed: SceneObject | null = null;
      for (let t = 0; t < PLACE_TRIES && !placed; t++) {
        const o: SceneObject = { shape, colour, size, x: at(), y: at(), w: side / GRID };
        if (!objects.some((p) => objectsOverlap(o, p))) placed = o;
      }
      if (!placed) break;
      objects.push(placed);
    }
    if (objects.length === n) return { objects, colours: cfg.colours, shapes: cfg.shapes };
  }
  throw new Error(`randomScene: could not place ${n} objects without overlaps in ${SCENE_TRIES} tries`);
}

/** The seed of item `index` of stream `stream` (a stage) under `seed`: a 32-bit hash of the three. */
export function itemSeed(seed: number, stream: number, index: number): number {
  let h = Math.imul(seed ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(stream + 1, 0xc2b2ae35) ^
    Math.imul(index + 1, 0x27d4eb2f);
  h ^= h >>> 15;
  h = Math.imul(h, 0x2c1b3c6d);
  h ^= h >>> 12;
  h = Math.imul(h, 0x297a2d39);
  h ^= h >>> 15;
  return h >>> 0;
}

/** The seed streams: each stage's scenes and rows draw from their own. */
const STREAM = { stage1: 1, stage2: 2, eval: 3, text: 4 } as const;

// ---------------------------------------------------------------------------------------------------
// Words

const NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five", "six"];

/** The plural of a shape's name. */
function plural(shape: ShapeKind): string {
  return `${shape}s`;
}

/** Where an object sits, in words: "on the left", "at the top right", "in the center", ... */
export function placeWords(o: SceneObject): string {
  const cx = o.x + o.w / 2, cy = o.y + o.w / 2;
  const col = cx < 0.4 ? "left" : cx > 0.6 ? "right" : "";
  const row = cy < 0.4 ? "top" : cy > 0.6 ? "bottom" : "";
  if (row === "" && col === "") return "in the center";
  if (row === "") return `on the ${col}`;
  return col === "" ? `at the ${row}` : `at the ${row} ${col}`;
}

/** "a", "a and b", "a, b and c". */
function listWords(parts: string[]): string {
  return parts.length === 1 ? parts[0] : `${parts.slice(0, -1).join(", ")} and ${parts[parts.length - 1]}`;
}

/**
 * The scene's caption: its objects from left to right, each as "a {size} {colour} {shape} {place}",
 * except that objects sharing colour and shape are counted once, at the place of the leftmost:
 * "a large red circle on the left and two green triangles".
 */
export function sceneCaption(scene: Scene): string {
  const objects = scene.objects.slice().sort((a, b) => a.x + a.w / 2 - (b.x + b.w / 2) || a.y - b.y);
  const groups = new Map<string, SceneObject[]>();
  for (const o of objects) {
    const key = `${o.colour} ${o.shape}`;
    groups.set(key, [...(groups.get(key) ?? []), o]);
  }
  const parts = [...groups.values()].map((g) => {
    const o = g[0];
    return g.length === 1
      ? `a ${o.size} ${o.colour} ${o.shape} ${placeWords(o)}`
      : `${NUMBER_WORDS[g.length]} ${o.colour} ${plural(o.shape)}`;
  });
  return listWords(parts);
}

// ---------------------------------------------------------------------------------------------------
// Questions

/** The question categories of the shapes evaluation set. */
export type ShapesCategory = "color" | "shape" | "count" | "position" | "existence";

/** Every {@linkcode ShapesCategory}. */
export const SHAPES_CATEGORIES: readonly ShapesCategory[] = [
  "color",
  "shape",
  "count",
  "position",
  "existence",
];

/** A question about a scene with its answer, before it gets an id and an image. */
export interface SceneQuestion {
  /** What is asked. */
  question: string;
  /** The expected answer: a word or a digit, the text of a choice, or yes / no. */
  answer: string;
  /** How the answer is scored. */
  type: QuestionType;
  /** The options of a `choice` question. */
  choices?: string[];
  /** What is asked about. */
  category: ShapesCategory;
}

/** The suffix of `open` and `yesno` prompts, as the evaluation asks them (trainers/evaluate.ts). */
const SHORT_ANSWER = "Answer the question using a single word or phrase.";
/** The suffix of `choice` prompts, as the evaluation asks them. */
const LETTER_ANSWER = "Answer with the option's letter from the given choices directly.";

/**
 * A question as the model is asked it, and the answer it should give: `open` and `yesno` questions
 * ask for a single word or phrase; `choice` questions list the options lettered A, B, ... and are
 * answered with the letter (the prompts of the evaluation, so training teaches what is scored).
 */
export function questionTurns(q: SceneQuestion): { human: string; gpt: string } {
  switch (q.type) {
    case "open":
    case "yesno":
      return { human: `${q.question}\n${SHORT_ANSWER}`, gpt: q.answer };
    case "choice": {
      const choices = q.choices ?? [];
      const i = choices.indexOf(q.answer);
      if (i < 0) {
        throw new Error(`questionTurns: answer ${JSON.stringify(q.answer)} is not among its choices`);
      }
      const listed = choices.map((c, k) => `${String.fromCharCode(65 + k)}. ${c}`).join("\n");
      return { human: `${q.question}\n${listed}\n${LETTER_ANSWER}`, gpt: String.fromCharCode(65 + i) };
    }
    default: {
      const never: never = q.type;
      throw new Error(`unknown question type ${JSON.stringify(never)}`);
    }
  }
}

/** How existence questions with the answer "no" pick their absent object. */
export interface ExistenceState {
  /** "No" questions about an object whose colour or shape is in the scene (POPE's adversarial). */
  adversarial: number;
  /** "No" questions about an object whose colour and shape are both absent (POPE's random). */
  random: number;
}

/** The colour + shape of an object, as a key. */
const kindOf = (o: { colour: string; shape: string }): string => `${o.colour} ${o.shape}`;

/**
 * A question of `category` about `scene`, drawn with `r`, or null when the scene has none of that
 * kind. `color` asks about a shape the scene has once; `shape` about a colour it has once; `count`
 * about all objects or one shape (possibly absent: "0"); `position` compares two objects that are
 * the only ones of their colour and shape, on an axis where their centres are at least 1/8 apart;
 * `existence` asks about a present object when `wantYes`, else about an absent one, adversarial
 * (its colour or shape is in the scene) when `state` has fewer of those than random ones and one
 * exists, else random when one exists; `state` counts the choice.
 */
export function sceneQuestion(
  scene: Scene,
  category: ShapesCategory,
  r: () => number,
  wantYes = true,
  state: ExistenceState = { adversarial: 0, random: 0 },
): SceneQuestion | null {
  const objects = scene.objects;
  const tally = (key: (o: SceneObject) => string) => {
    const m = new Map<string, SceneObject[]>();
    for (const o of objects) m.set(key(o), [...(m.get(key(o)) ?? []), o]);
    return m;
  };
  switch (category) {
    case "color": {
      const once = [...tally((o) => o.shape).values()].filter((g) => g.length === 1).map((g) => g[0]);
      if (once.length === 0) return null;
      const o = pick(r, once);
      return { question: `What color is the ${o.shape}?`, answer: o.colour, type: "open", category };
    }
    case "shape": {
      const once = [...tally((o) => o.colour).values()].filter((g) => g.length === 1).map((g) => g[0]);
      if (once.length === 0) return null;
      const o = pick(r, once);
      return { question: `What shape is the ${o.colour} object?`, answer: o.shape, type: "open", category };
    }
    case "count": {
      if (r() < 0.4) {
        return {
          question: "How many objects are there?",
          answer: String(objects.length),
          type: "open",
          category,
        };
      }
      const shape = pick(r, scene.shapes);
      const n = objects.filter((o) => o.shape === shape).length;
      return { question: `How many ${plural(shape)} are there?`, answer: String(n), type: "open", category };
    }
    case "position": {
      const kinds = tally(kindOf);
      const unique = objects.filter((o) => kinds.get(kindOf(o))!.length === 1);
      if (unique.length < 2) return null;
      const [a, b] = shuffled(r, unique);
      const dx = (a.x + a.w / 2) - (b.x + b.w / 2), dy = (a.y + a.w / 2) - (b.y + b.w / 2);
      const axes = [...(Math.abs(dx) >= 1 / 8 ? ["x"] : []), ...(Math.abs(dy) >= 1 / 8 ? ["y"] : [])];
      if (axes.length === 0) return null; // cannot happen: boxes of 1/4 or more apart by the gap
      const horizontal = pick(r, axes) === "x";
      const words = horizontal ? ["left", "right"] : ["above", "below"];
      const answer = horizontal ? (dx < 0 ? "left" : "right") : (dy < 0 ? "above" : "below");
      const choices = r() < 0.5 ? words : [words[1], words[0]];
      const relation = horizontal ? `${choices[0]} or ${choices[1]} of` : `${choices[0]} or ${choices[1]}`;
      return {
        question: `Is the ${kindOf(a)} ${relation} the ${kindOf(b)}?`,
        answer,
        type: "choice",
        choices,
        category,
      };
    }
    case "existence": {
      const ask = (c: string, s: string, answer: string): SceneQuestion => ({
        question: `Is there ${/^[aeiou]/.test(c) ? "an" : "a"} ${c} ${s} in the image?`,
        answer,
        type: "yesno",
        category,
      });
      if (wantYes) {
        const o = pick(r, objects);
        return ask(o.colour, o.shape, "yes");
      }
      const present = new Set(objects.map(kindOf));
      const colours = new Set<string>(objects.map((o) => o.colour));
      const shapes = new Set<string>(objects.map((o) => o.shape));
      const absent = scene.colours.flatMap((c) =>
        scene.shapes.filter((s) => !present.has(`${c} ${s}`)).map((s) => ({ c, s }))
      );
      const adversarial = absent.filter(({ c, s }) => colours.has(c) || shapes.has(s));
      const random = absent.filter(({ c, s }) => !colours.has(c) && !shapes.has(s));
      const useAdversarial = random.length === 0 ||
        (adversarial.length > 0 && state.adversarial <= state.random);
      if (useAdversarial && adversarial.length === 0) return null; // no absent object at all
      const { c, s } = pick(r, useAdversarial ? adversarial : random);
      if (useAdversarial) state.adversarial++;
      else state.random++;
      return ask(c, s, "no");
    }
    default: {
      const never: never = category;
      throw new Error(`unknown question category ${JSON.stringify(never)}`);
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// The data set

/** A LLaVA row as written to the JSON files. */
export interface ShapesRow {
  /** Unique id in its file. */
  id: string;
  /** The image's path relative to the JSON file's folder (`images/...png`); absent: text only. */
  image?: string;
  /** The turns: human, gpt, ...; the first human turn of an image row starts with `<image>`. */
  conversations: LlavaTurn[];
}

/** One image of the data set with its scene. */
export interface ShapesImage {
  /** Path relative to the data set's folder: `images/{stage}_{index}.png`. */
  image: string;
  /** What it shows. */
  scene: Scene;
}

/** The data set in memory ({@linkcode buildShapesDataset}). */
export interface ShapesDataset {
  /** Every image to write, stage 1, stage 2, then evaluation. */
  images: ShapesImage[];
  /** Stage-1 rows: one caption per image. */
  stage1: ShapesRow[];
  /** Stage-2 rows: 1 to maxTurns question-answer pairs per image, then the text-only rows. */
  stage2: ShapesRow[];
  /** The evaluation questions on held-out scenes (eval/questions.ts's format). */
  eval: Question[];
  /** The training text, one line each: every caption, question line and answer of stage 1 and 2. */
  corpus: string[];
}

/** The stage-2 question kinds: the evaluation's categories and a caption request. */
const TRAIN_KINDS: readonly (ShapesCategory | "caption")[] = [...SHAPES_CATEGORIES, "caption"];
const CAPTION_PROMPT = "Describe the image briefly.";

const pad = (i: number): string => String(i).padStart(6, "0");

/** A stage-2 conversation about `scene`: distinct questions of random kinds (yes / no at even odds). */
function conversation(
  scene: Scene,
  r: () => number,
  maxTurns: number,
  state: ExistenceState,
): LlavaTurn[] {
  const turns: LlavaTurn[] = [];
  const asked = new Set<string>();
  const want = 1 + Math.floor(r() * maxTurns);
  for (let t = 0; t < 4 * maxTurns && asked.size < want; t++) {
    const kind = pick(r, TRAIN_KINDS);
    let pair: { human: string; gpt: string } | null;
    if (kind === "caption") pair = { human: CAPTION_PROMPT, gpt: sceneCaption(scene) };
    else {
      const q = sceneQuestion(scene, kind, r, r() < 0.5, state);
      pair = q && questionTurns(q);
    }
    if (!pair || asked.has(pair.human)) continue;
    asked.add(pair.human);
    const first = turns.length === 0;
    turns.push({ from: "human", value: first ? `${IMAGE_MARKER}\n${pair.human}` : pair.human });
    turns.push({ from: "gpt", value: pair.gpt });
  }
  return turns;
}

/** A text-only conversation: which words are colours or shapes, and how many sides a shape has. */
function textConversation(cfg: ShapesConfig, r: () => number): LlavaTurn[] {
  const SIDES: Record<ShapeKind, string> = { square: "4", triangle: "3", circle: "0" };
  const turns: LlavaTurn[] = [];
  const want = 1 + Math.floor(r() * 2);
  const asked = new Set<string>();
  for (let t = 0; t < 8 && asked.size < want; t++) {
    let q: string, a: string;
    const k = Math.floor(r() * 3);
    if (k === 0) {
      const s = pick(r, cfg.shapes);
      [q, a] = [`How many sides does a ${s} have?`, SIDES[s]];
    } else if (k === 1) [q, a] = [`Is ${pick(r, cfg.colours)} a color or a shape?`, "color"];
    else [q, a] = [`Is ${pick(r, cfg.shapes)} a color or a shape?`, "shape"];
    if (asked.has(q)) continue;
    asked.add(q);
    turns.push({ from: "human", value: `${q}\n${SHORT_ANSWER}` }, { from: "gpt", value: a });
  }
  return turns;
}

/**
 * Builds the data set of `cfg` in memory (no files): the scenes of each stage from their own seed
 * streams, stage-1 captions, stage-2 conversations (every evaluation category, plus caption requests,
 * in the evaluation's prompt format), text-only rows, and the evaluation questions: per held-out
 * image one question of each category the scene allows, with existence asked twice (once yes, once
 * no, so yes and no are exactly balanced; half of the no's adversarial where the scene allows).
 */
export function buildShapesDataset(cfg: ShapesConfig): ShapesDataset {
  const images: ShapesImage[] = [];
  const scene = (stream: number, i: number) => {
    const r = rng(itemSeed(cfg.seed, stream, i));
    return { r, scene: randomScene(cfg, r) };
  };

  const stage1: ShapesRow[] = [];
  for (let i = 0; i < cfg.stage1Images; i++) {
    const s = scene(STREAM.stage1, i).scene;
    const image = `images/s1_${pad(i)}.png`;
    images.push({ image, scene: s });
    stage1.push({
      id: `s1-${pad(i)}`,
      image,
      conversations: [{ from: "human", value: IMAGE_MARKER }, { from: "gpt", value: sceneCaption(s) }],
    });
  }

  const stage2: ShapesRow[] = [];
  const trainState: ExistenceState = { adversarial: 0, random: 0 };
  for (let i = 0; i < cfg.stage2Images; i++) {
    const { r, scene: s } = scene(STREAM.stage2, i);
    const image = `images/s2_${pad(i)}.png`;
    images.push({ image, scene: s });
    stage2.push({ id: `s2-${pad(i)}`, image, conversations: conversation(s, r, cfg.maxTurns, trainState) });
  }
  for (let i = 0; i < cfg.stage2TextRows; i++) {
    const r = rng(itemSeed(cfg.seed, STREAM.text, i));
    stage2.push({ id: `s2-text-${pad(i)}`, conversations: textConversation(cfg, r) });
  }

  const questions: Question[] = [];
  const evalState: ExistenceState = { adversarial: 0, random: 0 };
  for (let i = 0; i < cfg.evalImages; i++) {
    const { r, scene: s } = scene(STREAM.eval, i);
    const image = `images/ev_${pad(i)}.png`;
    images.push({ image, scene: s });
    const yesFirst = r() < 0.5;
    const asks: [ShapesCategory, boolean][] = [
      ["color", true],
      ["shape", true],
      ["count", true],
      ["position", true],
      ["existence", yesFirst],
      ["existence", !yesFirst],
    ];
    let k = 0;
    for (const [category, wantYes] of asks) {
      const q = sceneQuestion(s, category, r, wantYes, evalState);
      if (!q) continue;
      questions.push({ id: `ev-${pad(i)}-${k++}`, image, ...q });
    }
  }

  const corpus: string[] = [];
  for (const row of [...stage1, ...stage2]) {
    for (const turn of row.conversations) {
      for (const line of turn.value.split("\n")) {
        if (line !== IMAGE_MARKER && line.trim() !== "") corpus.push(line);
      }
    }
  }
  return { images, stage1, stage2, eval: questions, corpus };
}

/** The files {@linkcode writeShapesDataset} wrote. */
export interface ShapesDatasetFiles {
  /** The data set's folder. */
  dir: string;
  /** The images' folder (`dir/images`). */
  imagesDir: string;
  /** Stage-1 caption rows (LLaVA JSON). */
  stage1: string;
  /** Stage-2 conversation rows (LLaVA JSON). */
  stage2: string;
  /** The evaluation questions (eval/questions.ts's format). */
  eval: string;
  /** The training text, one line each. */
  corpus: string;
  /** How many PNG images were written. */
  images: number;
}

/** A JSON array with one element per line. */
function jsonLines(items: unknown[]): string {
  return items.length === 0 ? "[]\n" : `[\n${items.map((x) => JSON.stringify(x)).join(",\n")}\n]\n`;
}

/** PNGs encoded at once. */
const WRITE_CONCURRENCY = 16;

/**
 * Writes the data set of `cfg` ({@linkcode buildShapesDataset}) into `dir`: `images/*.png` (S x S
 * RGB), `stage1.json`, `stage2.json`, `eval.json` (rows' and questions' `image` paths relative to
 * `dir`) and `corpus.txt`; returns the paths. Existing files of the same names are replaced.
 *
 * ```ts ignore
 * const files = await writeShapesDataset("runs/shapes", parseShapesConfig({}));
 * ```
 */
export async function writeShapesDataset(dir: string, cfg: ShapesConfig): Promise<ShapesDatasetFiles> {
  const data = buildShapesDataset(cfg);
  const imagesDir = join(dir, "images");
  try {
    await Deno.mkdir(imagesDir, { recursive: true });
  } catch (e) {
    throw new Error(`${imagesDir}: cannot create the shapes data set's folder: ${(e as Error).message}`);
  }
  const S = cfg.imageSize;
  for (let start = 0; start < data.images.length; start += WRITE_CONCURRENCY) {
    await Promise.all(
      data.images.slice(start, start + WRITE_CONCURRENCY).map(async ({ image, scene }) => {
        const { rgb } = renderScene(scene, S);
        const path = join(dir, image);
        try {
          await sharp(rgb, { raw: { width: S, height: S, channels: 3 } }).png().toFile(path);
        } catch (e) {
          throw new Error(`${path}: cannot write the PNG: ${(e as Error).message}`);
        }
      }),
    );
  }
  const files = {
    dir,
    imagesDir,
    stage1: join(dir, "stage1.json"),
    stage2: join(dir, "stage2.json"),
    eval: join(dir, "eval.json"),
    corpus: join(dir, "corpus.txt"),
    images: data.images.length,
  };
  await Deno.writeTextFile(files.stage1, jsonLines(data.stage1));
  await Deno.writeTextFile(files.stage2, jsonLines(data.stage2));
  await Deno.writeTextFile(files.eval, jsonLines(data.eval));
  await Deno.writeTextFile(files.corpus, data.corpus.join("\n") + (data.corpus.length ? "\n" : ""));
  return files;
}
