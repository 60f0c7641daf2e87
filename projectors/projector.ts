/**
 * Projectors map vision features to the LLM's width, as in LLaVA's `mm_projector`:
 * - `linear`: one Linear inDim -> outDim;
 * - `mlp2x_gelu`: Linear inDim -> outDim, exact (erf) GELU, Linear outDim -> outDim;
 * - `identity`: features pass through (inDim must equal outDim).
 *
 * Parameter names follow LLaVA's modules: `weight`, `bias` for `linear` (a bare `nn.Linear`), and the
 * `nn.Sequential` indices `0.weight`, `0.bias`, `2.weight`, `2.bias` for mlp2x_gelu; prefix them
 * (`model.mm_projector.`) when loading.
 * @module
 */

import { z } from "zod";
import { parseSchema } from "../schema/parse.ts";
import type { DType } from "../core/dtype.ts";
import type { Engine } from "../core/engine.ts";
import { gelu } from "../core/kernels/elementwise/elementwise.ts";
import { matmul } from "../core/kernels/matmul/matmul.ts";
import { rng } from "../core/random.ts";
import type { Tensor } from "../core/tensor.ts";

/** The projector kinds (LLaVA's `mm_projector_type`). */
export type ProjectorKind = "linear" | "mlp2x_gelu" | "identity";

/** Every {@linkcode ProjectorKind}. */
export const PROJECTOR_KINDS: readonly ProjectorKind[] = ["linear", "mlp2x_gelu", "identity"];

/** A projector's kind and widths. */
export interface ProjectorConfig {
  /** Which projector. */
  kind: ProjectorKind;
  /** Width of the vision features (e.g. 1152 for SigLIP-SO400M). */
  inDim: number;
  /** Width of the LLM (e.g. 4096). */
  outDim: number;
}

/** Options of {@linkcode Projector.create}. */
export interface ProjectorCreateOptions {
  /** Storage dtype of the parameters (default "f32"). */
  dtype?: DType;
  /** Seed of the random initialization (default 0). */
  seed?: number;
}

/** A projector config's rules; its parsed output is a {@linkcode ProjectorConfig}. */
const projectorSchema: z.ZodType<ProjectorConfig> = z.strictObject({
  kind: z.enum(PROJECTOR_KINDS),
  inDim: z.number().int().positive(),
  outDim: z.number().int().positive(),
});

/**
 * Validates a projector config given as data; `path` names where it sits (e.g. "projector") in
 * errors, which name the field, the value found and what is allowed.
 */
export function parseProjectorConfig(value: unknown, path: string): ProjectorConfig {
  const cfg = parseSchema(projectorSchema, value, path, {
    hints: { kind: PROJECTOR_KINDS.map((k) => JSON.stringify(k)).join(", ") },
  });
  checkProjectorConfig(cfg, path);
  return cfg;
}

function checkProjectorConfig(cfg: ProjectorConfig, source: string): void {
  if (cfg.kind === "identity" && cfg.inDim !== cfg.outDim) {
    throw new Error(
      `${source}: an identity projector needs inDim == outDim (got ${cfg.inDim} and ${cfg.outDim}); ` +
        `use kind "linear" or "mlp2x_gelu" to change the width`,
    );
  }
}

/**
 * Every parameter of a projector of `cfg`, by name in the order made: `make(name, shape, bound)` for
 * each, PyTorch's nn.Linear default U(-bound, bound) with bound = 1 / sqrt(fan_in), weight before bias.
 * The projector makes its tensors through it and {@linkcode projectorParamShapes} only notes the
 * shapes: one description of the architecture.
 */
function makeProjectorParams<T>(
  cfg: ProjectorConfig,
  make: (name: string, shape: number[], bound: number) => T,
): Map<string, T> {
  const out = new Map<string, T>();
  // `pre`: "" for the bare Linear of `linear`, "0." / "2." inside mlp2x_gelu's Sequential.
  const linear = (pre: string, inDim: number, outDim: number) => {
    const bound = 1 / Math.sqrt(inDim);
    out.set(`${pre}weight`, make(`${pre}weight`, [outDim, inDim], bound)); // [outDim, inDim]
    out.set(`${pre}bias`, make(`${pre}bias`, [outDim], bound)); // [outDim]
  };
  const kind = cfg.kind;
  switch (kind) {
    case "linear":
      linear("", cfg.inDim, cfg.outDim);
      break;
    case "mlp2x_gelu":
      linear("0.", cfg.inDim, cfg.outDim);
      linear("2.", cfg.outDim, cfg.outDim);
      break;
    case "identity":
      break;
    default: {
      const never: never = kind;
      throw new Error(`Projector: unhandled kind ${never}`);
    }
  }
  return out;
}

/**
 * The name and shape of every parameter of a projector of `cfg` (what `--plan` counts); nothing is
 * made, and the widths are not checked.
 */
export function projectorParamShapes(cfg: ProjectorConfig): Map<string, number[]> {
  return makeProjectorParams(cfg, (_name, shape) => shape);
}

/** A vision-to-LLM projector. Build with {@linkcode Projector.create}. */
export class Projector {
  /** The configuration. */
  readonly cfg: ProjectorConfig;
  #params: Map<string, Tensor>;

  private constructor(e: Engine, cfg: ProjectorConfig, dtype: DType, seed: number) {
    checkProjectorConfig(cfg, "Projector config");
    this.cfg = cfg;
    const r = rng(seed * 7919 + 1);
    this.#params = makeProjectorParams(cfg, (name, shape, bound) => {
      const n = shape.reduce((a, b) => a * b, 1);
      const data = Float32Array.from({ length: n }, () => (2 * r() - 1) * bound);
      return e.param(data, shape, { dtype, name });
    });
  }

  /** A projector with PyTorch's default Linear initialization. */
  static create(e: Engine, cfg: ProjectorConfig, opts: ProjectorCreateOptions = {}): Projector {
    return new Projector(e, cfg, opts.dtype ?? "f32", opts.seed ?? 0);
  }

  /** The parameters under LLaVA's names (see the module doc); none for identity. */
  params(): Map<string, Tensor> {
    return new Map(this.#params);
  }

  /** Marks every parameter frozen. */
  freeze(): void {
    for (const p of this.#params.values()) p.requiresGrad = false;
  }

  /** x [..., inDim] (at least 2 dims, e.g. [B, N, inDim]) -> [..., outDim]. */
  forward(x: Tensor): Tensor {
    if (x.shape.length < 2 || x.shape.at(-1) !== this.cfg.inDim) {
      throw new Error(`Projector.forward: x ${x} must be [..., ${this.cfg.inDim}] with at least 2 dims`);
    }
    const lin = (t: Tensor, pre: string) =>
      matmul(t, this.#params.get(`${pre}weight`)!, { transB: true, bias: this.#params.get(`${pre}bias`)! });
    const kind = this.cfg.kind;
    switch (kind) {
      case "linear":
        return lin(x, "");
      case "mlp2x_gelu":
        return lin(gelu(lin(x, "0."), "none"), "2.");
      case "identity":
        return x;
      default: {
        const never: never = kind;
        throw new Error(`Projector: unhandled kind ${never}`);
      }
    }
  }
}
