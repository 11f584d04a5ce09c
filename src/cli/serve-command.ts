import * as path from "node:path";
import { Command, InvalidArgumentError, Option } from "commander";
import { KERNEL_CHOICES } from "../contracts/lists.js";
import { buildServer } from "../server/app.js";
import { defaultModelDir, modelOptionHelp, PROJECT_ROOT } from "./default-model.js";
import { weightsOption } from "./weights-option.js";

function intArg(name: string, min: number, max: number) {
  return (v: string) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min || n > max)
      throw new InvalidArgumentError(`${name} must be an integer in [${min}, ${max}]`);
    return n;
  };
}

export function serveCommand(): Command {
  return new Command("serve")
    .description(
      "serve the interactive web app (generate, attention, relevancy, causality, export/import) over saved runs",
    )
    .option("--port <n>", "port to listen on", intArg("--port", 0, 65535), 7860)
    .option(
      "--host <addr>",
      "address to bind (loopback by default; anything else exposes the app to your network)",
      "127.0.0.1",
    )
    .option("--model <dir>", modelOptionHelp("the embedded default model"))
    .option("--data <dir>", "folder for runs and their index", path.join(PROJECT_ROOT, "runs"))
    .addOption(weightsOption())
    .addOption(
      new Option("--kernels <impl>", "matmul kernels: auto (by size) | ts | ort")
        .choices([...KERNEL_CHOICES])
        .default("auto"),
    )
    .option("--max-upload-mb <n>", "largest image upload in MiB", intArg("--max-upload-mb", 1, 1024), 20)
    .option(
      "--max-import-mb <n>",
      "largest run archive to import in MiB",
      intArg("--max-import-mb", 1, 1 << 20),
      4096,
    )
    .option(
      "--max-unpacked-mb <n>",
      "largest unpacked run archive to import in MiB (a 7B run with f32 attention can weigh GBs)",
      intArg("--max-unpacked-mb", 1, 1 << 22),
      16384,
    )
    .option(
      "--max-import-ratio <n>",
      "largest unpacked ÷ compressed size of an imported archive (refuses decompression bombs)",
      intArg("--max-import-ratio", 2, 1 << 20),
      100,
    )
    .action(async (o) => {
      const modelDir = path.resolve(o.model ?? defaultModelDir());
      const server = await buildServer({
        modelDir,
        dataDir: path.resolve(o.data),
        kernels: o.kernels,
        weights: o.weights,
        host: o.host,
        limits: {
          maxUploadBytes: o.maxUploadMb * 2 ** 20,
          maxImportBytes: o.maxImportMb * 2 ** 20,
          maxUnpackedBytes: o.maxUnpackedMb * 2 ** 20,
          maxImportRatio: o.maxImportRatio,
        },
      });
      const address = await server.app.listen({ port: o.port, host: o.host });
      process.stderr.write(
        `lvlm-interpret: serving ${address} (model ${modelDir}, runs in ${server.store.dataDir})\n`,
      );
      let closing = false;
      const stop = async () => {
        if (closing) process.exit(1);
        closing = true;
        process.stderr.write("lvlm-interpret: shutting down\n");
        await server.close();
        process.exit(0);
      };
      process.on("SIGINT", stop);
      process.on("SIGTERM", stop);
    });
}
