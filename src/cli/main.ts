#!/usr/bin/env node
/** `lvlm-interpret` command line: thin layer over the library API. */
import { Command } from "commander";
import { checkExecutionProvider } from "../kernels/ort-kernels.js";
import { batchCommand } from "./batch-command.js";
import { causalCommand } from "./causal-command.js";
import { checkCommand } from "./check-command.js";
import { reportAndExit } from "./errors.js";
import { relaunchWithHugePages } from "./huge-pages.js";
import { relevancyCommand } from "./relevancy-command.js";
import { serveCommand } from "./serve-command.js";
import { traceCommand } from "./trace-command.js";
import { trainCommand } from "./train-command.js";

// On Linux the command runs in a child started with huge pages for large allocations (see huge-pages.ts).
if (!(await relaunchWithHugePages())) await runCommand();

async function runCommand(): Promise<void> {
  const program = new Command("lvlm-interpret")
    .description(
      "Look inside LLaVA-style vision-language models: attention, relevancy and causal explanations",
    )
    .showHelpAfterError(false)
    .configureOutput({ outputError: (str, write) => write(`${str.split("\n")[0]}\n`) })
    .exitOverride()
    // A GPU execution provider that cannot start fails now, not after minutes of loading a model.
    .hook("preAction", () => checkExecutionProvider());

  program.addCommand(traceCommand());
  program.addCommand(relevancyCommand());
  program.addCommand(causalCommand());
  program.addCommand(checkCommand());
  program.addCommand(batchCommand());
  program.addCommand(serveCommand());
  program.addCommand(trainCommand());

  try {
    await program.parseAsync(process.argv);
  } catch (e) {
    const code = (e as { code?: string }).code;
    if (code === "commander.helpDisplayed" || code === "commander.version" || code === "commander.help")
      process.exit(0);
    if (code?.startsWith("commander.")) process.exit(1);
    reportAndExit(e);
  }
}
