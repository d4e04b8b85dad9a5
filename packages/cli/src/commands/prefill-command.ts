import { Command } from "commander";
import { addTargetOptions } from "../target-options";
import { addPrefillOptions, type PrefillFlags } from "./prefill/add-prefill-options";
import { runPrefillCommand } from "./prefill/run-prefill-command";

/** `opal prefill`: offload a prompt's prefill to a device and write the KV cache to a file. */
export function createPrefillCommand(): Command {
  const command = new Command("prefill").description(
    "Offload a prompt's prefill to a device and write its KV cache (verified) to a file or folder.",
  );
  addPrefillOptions(command).showHelpAfterError();
  return addTargetOptions(command).action((o: PrefillFlags) => runPrefillCommand(o));
}
