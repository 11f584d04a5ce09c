/** The `--weights` option of the commands that load a model for new runs (trace, batch, serve). */
import { Option } from "commander";
import { WEIGHT_FORMATS } from "../contracts/lists.js";

export function weightsOption(): Option {
  return new Option(
    "--weights <format>",
    "stored (as on disk) | int8 (the LLM's matrices quantised at load: faster on a CPU, other numbers; " +
      "recorded in each run, whose analyses then load the model the same way)",
  )
    .choices([...WEIGHT_FORMATS])
    .default("stored");
}
