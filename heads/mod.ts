/**
 * Visual heads: they turn the LLM's hidden states at the image positions into a visual loss against
 * the discrete codes of a frozen visual tokenizer (ASVR_SPEC sections 3-4). Each kind is a `HeadKind`
 * registered with `registerHead`; the framework's kinds (`none`, the LLaVA baseline; `linear`, one
 * classifier per depth; `asvr_depth`, ASVR's RQ depth transformer; `dual`, appearance + semantic
 * heads) register through the same door as a user's.
 *
 * ```ts ignore
 * import { buildHead, parseHeadConfig } from "@asvr/asvr/heads";
 * const head = buildHead(e, parseHeadConfig({ kind: "asvr_depth" }, "head"), { llmWidth: 4096 });
 * const { total, terms } = head.loss(hidden, { semantic: { codes, codebooks } }); // terms.visual_semantic
 * ```
 * @module
 */

import "./builtin.ts";

export {
  type HeadConfig,
  type HeadConfigBase,
  type HeadContext,
  type HeadLoss,
  VISUAL_TARGETS,
  type VisualHead,
  type VisualTarget,
  type VisualTargetCodes,
  type VisualTargets,
} from "./head.ts";
export type { SafeParser, SchemaIssue } from "../schema/parse.ts";
export {
  type AsvrDepthHeadConfig,
  type AsvrDepthHeadConfigInput,
  type ClassifierFields,
  type DualHeadConfig,
  type DualHeadConfigInput,
  type HeadConfigInput,
  type LinearHeadConfig,
  type LinearHeadConfigInput,
  type NoneHeadConfig,
} from "./config.ts";
export {
  buildHead,
  checkHeadTargets,
  fillHeadConfig,
  type HeadKind,
  headKind,
  headParamShapes,
  type HeadPlanBytes,
  headPlanBytes,
  type HeadPlanStep,
  type HeadTarget,
  headTargets,
  parseHeadConfig,
  registeredHeadKinds,
  registerHead,
  type TokenizerSizes,
} from "./registry.ts";
export { ASVR_DEPTH_HEAD, DUAL_HEAD, LINEAR_HEAD, NO_HEAD, NONE_HEAD } from "./builtin.ts";
export { AsvrDepthHead } from "./asvr_depth.ts";
export { LinearHead } from "./linear.ts";
export { NoneHead } from "./none.ts";
export { DualHead } from "./dual.ts";
export {
  ParamMaker,
  type ParamOptions,
  type ParamShape,
  type ParamSink,
  ShapeRecorder,
} from "./param_init.ts";
export { checkVisualInputs, type VisualInputs, type VisualInputSpec } from "./visual_inputs.ts";
