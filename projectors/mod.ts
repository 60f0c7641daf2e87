/**
 * Projectors from vision features to the LLM's width: linear, mlp2x_gelu, identity (LLaVA's
 * `mm_projector`).
 * @module
 */

export {
  parseProjectorConfig,
  Projector,
  PROJECTOR_KINDS,
  type ProjectorConfig,
  type ProjectorCreateOptions,
  type ProjectorKind,
} from "./projector.ts";
