/**
 * Simple shape scenes: their geometry (squares, circles and triangles on a plain black background,
 * in coordinates that are fractions of the image side), drawing them with hard edges, and dense
 * per-patch labels (background, or which colour and shape covers the patch).
 *
 * Drawing uses only exact arithmetic (pixel centres against the shapes' edges), so a scene gives the
 * same pixels on every machine.
 *
 * ```ts ignore
 * const { rgb, objectMap } = renderScene(scene, 32); // u8 [32*32*3], i8 [32*32]
 * const labels = patchLabels(scene, 32, 8); // i32 [16]
 * ```
 * @module
 */

/** A shape an object can have. */
export type ShapeKind = "square" | "circle" | "triangle";

/** Every {@linkcode ShapeKind}. */
export const SHAPE_KINDS: readonly ShapeKind[] = ["square", "circle", "triangle"];

/** A colour an object can have (names as the captions and questions say them). */
export type ColourName =
  | "red"
  | "green"
  | "blue"
  | "yellow"
  | "purple"
  | "orange"
  | "cyan"
  | "pink"
  | "white"
  | "brown"
  | "gray";

/** The RGB value of every {@linkcode ColourName}; the background is black. */
export const COLOUR_RGB: Readonly<Record<ColourName, readonly [number, number, number]>> = {
  red: [220, 40, 40],
  green: [40, 180, 60],
  blue: [50, 90, 230],
  yellow: [240, 220, 40],
  purple: [150, 60, 200],
  orange: [250, 140, 20],
  cyan: [40, 210, 220],
  pink: [250, 130, 190],
  white: [245, 245, 245],
  brown: [140, 90, 40],
  gray: [128, 128, 128],
};

/** Every {@linkcode ColourName}. */
export const COLOUR_NAMES: readonly ColourName[] = Object.keys(COLOUR_RGB) as ColourName[];

/** The background's RGB value. */
export const BACKGROUND_RGB: readonly [number, number, number] = [0, 0, 0];

/** An object's size class. */
export type SizeName = "small" | "large";

/** Every {@linkcode SizeName}. */
export const SIZE_NAMES: readonly SizeName[] = ["small", "large"];

/** The side of an object's bounding box per size class, as a fraction of the image side. */
export const SIZE_EXTENT: Readonly<Record<SizeName, number>> = { small: 16 / 64, large: 24 / 64 };

/**
 * One object of a scene. Coordinates are fractions of the image side (0 = left / top edge), so a
 * scene renders at any size. The bounding box is the square [x, x + w) x [y, y + w); a circle fills
 * its inscribed disc, a triangle points up with its base on the box's bottom edge.
 */
export interface SceneObject {
  /** The shape. */
  shape: ShapeKind;
  /** The colour. */
  colour: ColourName;
  /** The size class; `w` is {@linkcode SIZE_EXTENT}[size]. */
  size: SizeName;
  /** Left edge of the bounding box, fraction of the image side. */
  x: number;
  /** Top edge of the bounding box, fraction of the image side. */
  y: number;
  /** Side of the bounding box, fraction of the image side. */
  w: number;
}

/**
 * A scene: objects whose bounding boxes do not overlap, and the colour and shape lists that number
 * the patch classes ({@linkcode patchLabels}).
 */
export interface Scene {
  /** The objects; an object's index is its id in {@linkcode RenderedScene.objectMap}. */
  objects: SceneObject[];
  /** The colours of the label space, in order (class numbering). */
  colours: readonly ColourName[];
  /** The shapes of the label space, in order (class numbering). */
  shapes: readonly ShapeKind[];
}

/** A drawn scene. */
export interface RenderedScene {
  /** Pixels, u8 [S, S, 3] (row-major, channels R, G, B). */
  rgb: Uint8Array;
  /** Which object each pixel shows, i8 [S, S]: -1 background, else the object's index. */
  objectMap: Int8Array;
}

/** Whether the pixel centre (u, v) (fractions of the image side) lies inside `o`. */
function inside(o: SceneObject, u: number, v: number): boolean {
  if (u < o.x || u >= o.x + o.w || v < o.y || v >= o.y + o.w) return false;
  switch (o.shape) {
    case "square":
      return true;
    case "circle": {
      const r = o.w / 2, du = u - (o.x + r), dv = v - (o.y + r);
      return du * du + dv * dv <= r * r;
    }
    case "triangle": // apex at the top centre, half-width grows by 1/2 per unit of depth
      return 2 * Math.abs(u - (o.x + o.w / 2)) <= v - o.y;
    default: {
      const never: never = o.shape;
      throw new Error(`unknown shape ${JSON.stringify(never)}`);
    }
  }
}

/**
 * Draws `scene` at `size` x `size` pixels with hard edges: a pixel takes the colour of the object
 * that contains its centre (objects do not overlap; a later object would win), else the background.
 */
export function renderScene(scene: Scene, size: number): RenderedScene {
  if (!Number.isInteger(size) || size < 1) {
    throw new Error(`renderScene: size must be a positive integer (pixels), got ${size}`);
  }
  if (scene.objects.length > 127) {
    throw new Error(`renderScene: at most 127 objects fit the i8 object map, got ${scene.objects.length}`);
  }
  const S = size;
  const rgb = new Uint8Array(S * S * 3); // [S, S, 3]
  const objectMap = new Int8Array(S * S).fill(-1); // [S, S]
  for (let p = 0; p < S * S; p++) rgb.set(BACKGROUND_RGB, 3 * p);
  scene.objects.forEach((o, k) => {
    const colour = COLOUR_RGB[o.colour];
    if (!colour) throw new Error(`renderScene: object ${k} has unknown colour ${JSON.stringify(o.colour)}`);
    const i0 = Math.max(0, Math.floor(o.x * S)), i1 = Math.min(S, Math.ceil((o.x + o.w) * S));
    const j0 = Math.max(0, Math.floor(o.y * S)), j1 = Math.min(S, Math.ceil((o.y + o.w) * S));
    for (let j = j0; j < j1; j++) {
      for (let i = i0; i < i1; i++) {
        if (!inside(o, (i + 0.5) / S, (j + 0.5) / S)) continue;
        objectMap[j * S + i] = k;
        rgb.set(colour, 3 * (j * S + i));
      }
    }
  });
  return { rgb, objectMap };
}

/**
 * The patch class of each `patch` x `patch` patch of `scene` drawn at `size` pixels, i32 [(S/P)^2]
 * in row-major patch order: 0 when objects cover less than `minCover` of the patch's pixels (by
 * default 0.5: a background-majority patch), else 1 + colourIndex * numShapes + shapeIndex of the
 * object covering most of it (the lower index on a tie), indices into `scene.colours` and
 * `scene.shapes`. There are `1 + colours * shapes` classes ({@linkcode numPatchClasses} in shapes.ts).
 */
export function patchLabels(scene: Scene, size: number, patch: number, minCover = 0.5): Int32Array {
  if (!Number.isInteger(patch) || patch < 1 || size % patch !== 0) {
    throw new Error(`patchLabels: patch (${patch}) must be a positive integer that divides size (${size})`);
  }
  const classes = scene.objects.map((o, k) => {
    const c = scene.colours.indexOf(o.colour), s = scene.shapes.indexOf(o.shape);
    if (c < 0 || s < 0) {
      throw new Error(
        `patchLabels: object ${k} (${o.colour} ${o.shape}) is outside the scene's label space ` +
          `(colours ${scene.colours.join(", ")}; shapes ${scene.shapes.join(", ")})`,
      );
    }
    return 1 + c * scene.shapes.length + s;
  });
  const { objectMap } = renderScene(scene, size);
  const G = size / patch;
  const out = new Int32Array(G * G); // [G*G]
  const counts = new Int32Array(scene.objects.length);
  for (let gy = 0; gy < G; gy++) {
    for (let gx = 0; gx < G; gx++) {
      counts.fill(0);
      let covered = 0;
      for (let j = gy * patch; j < (gy + 1) * patch; j++) {
        for (let i = gx * patch; i < (gx + 1) * patch; i++) {
          const k = objectMap[j * size + i];
          if (k >= 0) {
            counts[k]++;
            covered++;
          }
        }
      }
      if (covered === 0 || covered < minCover * patch * patch) continue;
      let best = 0;
      for (let k = 1; k < counts.length; k++) if (counts[k] > counts[best]) best = k;
      out[gy * G + gx] = classes[best];
    }
  }
  return out;
}
