/**
 * Patch embedding of a ViT: the convolution with stride = kernel = p is a matmul on patches. The
 * image is cut into non-overlapping p x p patches with one permute, and the conv weight, viewed as a
 * [C, 3*p*p] matrix, multiplies them. Both steps are differentiable.
 * @module
 */

import { reshape } from "../core/autograd.ts";
import { matmul } from "../core/kernels/matmul/matmul.ts";
import { permute } from "../core/kernels/permute/permute.ts";
import { slice } from "../core/kernels/rows/rows.ts";
import type { Tensor } from "../core/tensor.ts";

/**
 * Cuts images into patches: pixels [B, 3, H, W] -> [B, N, 3*p*p], N = floor(H/p) * floor(W/p),
 * patches in row-major order over the grid, each patch's values in (channel, row, column) order:
 * the order of a conv weight [C, 3, p, p] flattened. Like a stride-p conv, rows and columns past
 * the last whole patch are dropped (384 px with p = 14: 27 patches, 6 px unused).
 */
export function patchify(pixels: Tensor, p: number): Tensor {
  if (pixels.shape.length !== 4) throw new Error(`patchify: pixels ${pixels} must be [B, 3, H, W]`);
  const [B, CH, H, W] = pixels.shape;
  const gh = Math.floor(H / p), gw = Math.floor(W / p);
  if (!Number.isInteger(p) || p < 1 || gh === 0 || gw === 0) {
    throw new Error(`patchify: patch size ${p} does not fit the ${H}x${W} image of ${pixels}`);
  }
  let x = pixels;
  if (H !== gh * p) x = slice(x, 2, 0, gh * p); // [B, 3, gh*p, W]
  if (W !== gw * p) x = slice(x, 3, 0, gw * p); // [B, 3, gh*p, gw*p]
  const grid = reshape(x, [B, CH, gh, p, gw, p]); // [B, 3, H/p, p, W/p, p]
  const patches = permute(grid, [0, 2, 4, 1, 3, 5]); // [B, H/p, W/p, 3, p, p]
  return reshape(patches, [B, gh * gw, CH * p * p]); // [B, N, 3*p*p]
}

/**
 * The conv patch embedding as a matmul: pixels [B, 3, H, W], weight [C, 3, p, p], bias [C] or null
 * -> [B, N, C]. Equal to `conv2d(pixels, weight, bias, stride=p)` flattened over the output grid.
 */
export function patchEmbed(pixels: Tensor, weight: Tensor, bias: Tensor | null, p: number): Tensor {
  if (weight.shape.length !== 4 || weight.shape[2] !== p || weight.shape[3] !== p) {
    throw new Error(`patchEmbed: weight ${weight} must be [C, 3, ${p}, ${p}]`);
  }
  if (weight.shape[1] !== pixels.shape[1]) {
    throw new Error(`patchEmbed: weight ${weight} expects ${weight.shape[1]} channels, pixels are ${pixels}`);
  }
  const C = weight.shape[0];
  const w = reshape(weight, [C, weight.size / C]); // [C, 3*p*p]
  return matmul(patchify(pixels, p), w, { transB: true, bias: bias ?? undefined }); // [B, N, C]
}
