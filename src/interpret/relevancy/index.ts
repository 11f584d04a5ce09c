/** Relevancy maps (model-driven): the public API the CLI, server, views, tests and benchmarks use. */
export { relevancyMaps } from "./maps.js";
export { checkVisionMaps, resolveTokens } from "./plan.js";
export {
  allInitialMap,
  allV2InitialMap,
  type Cam,
  camFromGrad,
  camInto,
  chainFromMatrix,
  handleResidual,
  normalizeRow,
  rolloutLeft,
  rolloutMatrix,
  rolloutRow,
} from "./rollout.js";
export {
  type ComputeRelevancyOptions,
  computeRelevancy,
  type RelevancyRecord,
  type RelevancySummary,
  relevancyFileName,
  relevancyRecord,
  relevancyTensorName,
  towerSourcesTensorName,
} from "./run.js";
export {
  RELEVANCY_MODES,
  RelevancyError,
  type RelevancyInputs,
  type RelevancyMode,
  type RelevancyOptions,
  type RelevancyResult,
  TAPE_MEMORY_BYTES,
  type TokenRelevancy,
  VISION_RELEVANCY_KINDS,
  type VisionRelevancyKind,
  type VitGradients,
} from "./types.js";
