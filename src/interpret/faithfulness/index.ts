/** The faithfulness check: does deleting what a map ranks highest take the answer token's probability away? */
export {
  type CurvePair,
  checkFaithfulness,
  DEFAULT_SEEDS,
  DEFAULT_STEPS,
  FAITHFULNESS_FORMAT,
  FaithfulnessError,
  type FaithfulnessOptions,
  type FaithfulnessResult,
  faithfulnessFile,
  PERTURBATION,
  readFaithfulness,
} from "./check-run.js";
export {
  deletionCurve,
  insertionCurve,
  type ProbeInput,
  softmaxAt,
  stepCount,
  TokenProbe,
  tokenOrder,
} from "./curves.js";
export {
  formatMapSpec,
  MAP_SPEC_HELP,
  type MapSpec,
  MapSpecError,
  mapSpecSlug,
  parseMapSpec,
  readTokenMap,
} from "./maps.js";
export { locatedTokens, paintImageTokens } from "./perturb.js";
