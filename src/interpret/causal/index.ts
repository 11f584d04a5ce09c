/** Causal explanations (CLEANN over attention with ordered-ICD structure learning). */
export { erfc } from "../../tensor/ops.js";
export {
  type CITest,
  type CITestStats,
  CorrelationMatrix,
  DSeparationOracle,
  fisherZPValue,
  ParCorrTest,
  partialCorrelation,
  rowCorrelation,
} from "./ci-test.js";
export {
  type CleannParams,
  contiguousLayout,
  DEFAULT_CLEANN_PARAMS,
  type EdgeRecord,
  explainHead,
  type HeadExplanation,
  type HeadResult,
  type NodeSelection,
  patchWeight,
  selectNodes,
  type TokenLayout,
} from "./cleann.js";
export {
  aggregatePatchWeights,
  CAUSAL_FORMAT,
  type CausalDocument,
  CausalError,
  type CausalOptions,
  explainLayer,
  explainRun,
  type PatchWeights,
  parseHeads,
} from "./explain-run.js";
export { OrderedICD, type OrderedIcdOptions } from "./icd.js";
export {
  ARROW,
  CIRCLE,
  edgeString,
  MARK_NAMES,
  type Mark,
  type MarkName,
  NONE,
  PAG,
  type PagEdge,
  SepSets,
  TAIL,
} from "./pag.js";
export { createPdsTree, PDSTree, type PdsTreeResult } from "./pds-tree.js";
export { combinations, PySet } from "./py-set.js";
