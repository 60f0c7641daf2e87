import assert from "node:assert/strict";
import { join } from "node:path";
import { ImagePathError, ImageRoot, resolveImagePath } from "./image_path.ts";

/** A temp folder with `root/` (an image, a folder and links) and a file `outside.png` beside it. */
async function layout(): Promise<{ dir: string; root: string }> {
  const dir = await Deno.realPath(await Deno.makeTempDir());
  const root = join(dir, "root");
  await Deno.mkdir(join(root, "coco"), { recursive: true });
  await Deno.writeTextFile(join(root, "coco", "a.png"), "a");
  await Deno.writeTextFile(join(dir, "outside.png"), "secret");
  await Deno.symlink(join(dir, "outside.png"), join(root, "out.png"));
  await Deno.symlink(join(root, "coco", "a.png"), join(root, "in.png"));
  await Deno.symlink(dir, join(root, "up"));
  return { dir, root };
}

async function refusal(p: Promise<string>): Promise<ImagePathError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof ImagePathError, String(err));
    return err;
  }
  throw new Error("expected an ImagePathError");
}

Deno.test("ImageRoot: paths inside the root resolve; .., absolute paths elsewhere and links out are refused", async () => {
  const { dir, root } = await layout();
  try {
    const r = new ImageRoot(root, { option: "data.followSymlinks" });
    assert.equal(await r.resolve("coco/a.png"), join(root, "coco", "a.png"));
    assert.equal(await r.resolve("coco/../coco/./a.png"), join(root, "coco", "a.png"));
    assert.equal(
      await r.resolve(join(root, "coco", "a.png")),
      join(root, "coco", "a.png"),
      "absolute, inside",
    );
    assert.equal(await r.resolve("in.png"), join(root, "coco", "a.png"), "a link that stays inside");
    // A missing file comes back joined, for the reader to say it is missing.
    assert.equal(await r.resolve("coco/missing.png"), join(root, "coco", "missing.png"));

    const up = await refusal(r.resolve("../../../../etc/passwd"));
    assert.match(
      up.message,
      /^\.\.\/\.\.\/\.\.\/\.\.\/etc\/passwd: the path leads through "\.\." to \/etc\/passwd, outside the image root /,
    );
    assert.equal(up.image, "../../../../etc/passwd");
    assert.equal(up.root, root);
    await refusal(r.resolve(".."));
    const abs = await refusal(r.resolve(join(dir, "outside.png")));
    assert.match(
      abs.message,
      /outside\.png: an absolute path, outside the image root .*; give image paths relative/,
    );
    const link = await refusal(r.resolve("out.png"));
    assert.match(
      link.message,
      new RegExp(
        `^out\\.png: a symbolic link leads to ${dir}/outside\\.png, outside the image root ${root}; set data\\.followSymlinks: true`,
      ),
    );
    await refusal(r.resolve("up/outside.png")); // a linked folder that leads out
    // A name that only starts with two dots stays inside.
    await Deno.writeTextFile(join(root, "..a.png"), "x");
    assert.equal(await r.resolve("..a.png"), join(root, "..a.png"));

    // Links out are followed when allowed; .. is refused still.
    const follow = new ImageRoot(root, { followSymlinks: true });
    assert.equal(await follow.resolve("out.png"), join(root, "out.png"));
    await refusal(follow.resolve("../outside.png"));
    // Without an option to name, the fix is to move the image.
    assert.match(
      (await refusal(resolveImagePath(root, "out.png"))).message,
      /copy the image into the image root/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("ImageRoot: a root given through a link resolves its images", async () => {
  const { dir, root } = await layout();
  try {
    await Deno.symlink(root, join(dir, "alias"));
    assert.equal(await resolveImagePath(join(dir, "alias"), "coco/a.png"), join(root, "coco", "a.png"));
    await refusal(resolveImagePath(join(dir, "alias"), "out.png"));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
