/**
 * Image paths of data rows kept inside their image root. A row's `image` is resolved against the root
 * as the reference resolves it (`os.path.join(root, image)`: an absolute path stays absolute), and
 * refused when it leads outside the root: through `..`, as an absolute path elsewhere, or, unless
 * links out are allowed, through a symbolic link (the file's real path is compared with the root's).
 *
 * ```ts ignore
 * const root = new ImageRoot("data/llava/images", { option: "data.followSymlinks" });
 * await root.resolve("coco/train2017/000000033471.jpg"); // "/data/llava/images/coco/train2017/000000033471.jpg"
 * await root.resolve("../../../../etc/passwd"); // throws ImagePathError
 * ```
 * @module
 */

import { isAbsolute, relative, resolve, sep } from "node:path";

/** Options of {@linkcode ImageRoot} and {@linkcode resolveImagePath}. */
export interface ImagePathOptions {
  /**
   * Follow symbolic links that lead out of the root (for data sets laid out with them). Default false:
   * an image whose real path lies outside the root is refused. Paths that leave the root through `..`
   * or as absolute paths elsewhere are refused either way.
   */
  followSymlinks?: boolean;
  /** The config option that sets `followSymlinks`, named in the error's fix (e.g. "data.followSymlinks"). */
  option?: string;
}

/** An image path that leads outside its image root; the message names the path, the root and the fix. */
export class ImagePathError extends Error {
  /** The image path as the row gave it. */
  readonly image: string;
  /** The image root. */
  readonly root: string;

  /** `why` says how the path leaves the root; `fix` what to do about it. */
  constructor(image: string, root: string, why: string, fix: string) {
    super(`${image}: ${why}, outside the image root ${root}; ${fix}`);
    this.name = "ImagePathError";
    this.image = image;
    this.root = root;
  }
}

/** Whether `path` (absolute, normalized) is `dir` or lies under it. */
function isInside(dir: string, path: string): boolean {
  const rel = relative(dir, path);
  return rel === "" || (rel !== ".." && !rel.startsWith(`..${sep}`) && !isAbsolute(rel));
}

/**
 * A folder that image paths are resolved against and must stay inside. Its real path is found once,
 * on the first image that exists, and each image costs one `Deno.realPath`.
 */
export class ImageRoot {
  /** The folder, as given. */
  readonly dir: string;
  readonly #abs: string;
  readonly #followSymlinks: boolean;
  readonly #option: string | undefined;
  #real: Promise<string> | null = null;

  /** A root at `dir` (it is not read until an image is resolved). */
  constructor(dir: string, opts: ImagePathOptions = {}) {
    this.dir = dir;
    this.#abs = resolve(dir);
    this.#followSymlinks = opts.followSymlinks ?? false;
    this.#option = opts.option;
  }

  /**
   * The path to open for `image`: its real path (symbolic links resolved), or with `followSymlinks` the
   * path joined to the root. A path that does not resolve (a missing file, say) comes back joined, for
   * the reader to report. Throws an {@linkcode ImagePathError} for a path outside the root.
   */
  async resolve(image: string): Promise<string> {
    const path = resolve(this.#abs, image);
    if (!isInside(this.#abs, path)) {
      const why = isAbsolute(image) ? "an absolute path" : `the path leads through ".." to ${path}`;
      throw new ImagePathError(
        image,
        this.dir,
        why,
        "give image paths relative to the image root, or set the image root to a folder that holds the images",
      );
    }
    if (this.#followSymlinks) return path;
    let real: string;
    try {
      real = await Deno.realPath(path);
    } catch {
      return path; // missing, or not readable: the reader names what is wrong
    }
    this.#real ??= Deno.realPath(this.#abs);
    const root = await this.#real;
    if (!isInside(root, real)) {
      const fix = this.#option
        ? `set ${this.#option}: true to follow links out of the image root, or copy the image into it`
        : "copy the image into the image root, or make the folder that holds it the image root";
      throw new ImagePathError(image, this.dir, `a symbolic link leads to ${real}`, fix);
    }
    return real;
  }
}

/**
 * The path to open for `image` under `root` (see {@linkcode ImageRoot.resolve}); throws an
 * {@linkcode ImagePathError} for a path outside the root. For many images, make one
 * {@linkcode ImageRoot} and resolve them all with it (the root's real path is found once).
 */
export function resolveImagePath(root: string, image: string, opts: ImagePathOptions = {}): Promise<string> {
  return new ImageRoot(root, opts).resolve(image);
}
