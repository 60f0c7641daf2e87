/**
 * Visual heads: they turn the LLM's hidden states at the image positions into a visual loss against
 * the discrete codes of a frozen visual tokenizer (ASVR_SPEC sections 3-4). Built-in kinds: `none`
 * (the LLaVA baseline), `linear` (one classifier per depth), `asvr_depth` (ASVR's RQ depth
 * transformer) and `dual` (appearance + semantic heads); custom kinds register with `registerHead`.
 *
 * ```ts ignore
 * import { buildHead, parseHeadConfig } from "@asvr/asvr/heads";
 * const head = buildHead(e, parseHeadConfig({ kind: "asvr_depth" }, "head"), { llmWidth: 4096 });
 * const { total, terms } = head.loss(hidden, { semantic: { codes, codebooks } }); // terms.visual_semantic
 * ```
 * @module
 */

export {
  BUILTIN_HEAD_KINDS,
  type BuiltinHeadKind,
  type HeadConfigBase,
  type HeadContext,
  type HeadLoss,
  isBuiltinHeadKind,
  VISUAL_TARGETS,
  type VisualHead,
  type VisualTarget,
  type VisualTargetCodes,
  type VisualTargets,
} from "./head.ts";
export {
  type AsvrDepthHeadConfig,
  type BuiltinHeadConfig,
  type CustomHeadConfig,
  type DualHeadConfig,
  type DualSideConfig,
  type HeadConfig,
  type LinearHeadConfig,
  type NoneHeadConfig,
  parseHeadConfig,
} from "./config.ts";
export {
  type HeadConfigIssue,
  type HeadConfigParseResult,
  type HeadConfigSchema,
  type HeadFactory,
  registeredHeadKinds,
  registerHead,
  type RegisterHeadOptions,
} from "./registry.ts";
export { buildHead } from "./build_head.ts";
export { ASVR_RMS_EPS, AsvrDepthHead } from "./asvr_depth.ts";
export { LinearHead } from "./linear.ts";
export { NoneHead } from "./none.ts";
export { DualHead } from "./dual.ts";
export { DepthClassifiers } from "./depth_classifiers.ts";
export { ParamMaker } from "./param_init.ts";
export { checkVisualInputs, type VisualInputs, type VisualInputSpec } from "./visual_inputs.ts";
