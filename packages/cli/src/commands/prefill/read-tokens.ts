import { readFile } from "node:fs/promises";
import { Code, OpalError } from "@opal/core";
import { createByteTokenizer } from "@opal/reference";
import { InvalidArgumentError } from "commander";
import { loadTokenizer } from "../../load-tokenizer";
import type { PrefillFlags } from "./add-prefill-options";

/**
 * The prompt's token ids: `--prompt` as UTF-8 bytes after BOS, or `--tokens-file` (a JSON array or
 * whitespace-separated integers, at least one). INVALID_ARGUMENT naming the file and the first bad
 * value; NOT_FOUND when the file cannot be read.
 */
export async function readTokens(o: PrefillFlags): Promise<Uint32Array> {
  if ((o.prompt === undefined) === (o.tokensFile === undefined)) {
    throw new InvalidArgumentError("give exactly one of --prompt and --tokens-file");
  }
  if (o.prompt !== undefined) {
    if (o.tokenizer) return (await loadTokenizer(o.tokenizer))(o.prompt);
    return createByteTokenizer().encode(o.prompt);
  }
  const file = o.tokensFile!;
  const text = (
    await readFile(file, "utf8").catch((error: NodeJS.ErrnoException) => {
      throw new OpalError(
        Code.NOT_FOUND,
        `cannot read --tokens-file ${file}: ${error.code ?? error.message}`,
      );
    })
  ).trim();
  let values: unknown[];
  if (text.startsWith("[")) {
    try {
      values = JSON.parse(text);
    } catch (error) {
      throw new OpalError(
        Code.INVALID_ARGUMENT,
        `--tokens-file ${file} is not a JSON array of token ids: ${(error as Error).message}`,
      );
    }
  } else {
    values =
      text === ""
        ? []
        : text.split(/\s+/).map((word) => (/^\d+$/.test(word) ? Number(word) : word));
  }
  const bad = values.findIndex(
    (v) => !(Number.isInteger(v) && (v as number) >= 0 && (v as number) < 2 ** 32),
  );
  if (bad >= 0) {
    throw new OpalError(
      Code.INVALID_ARGUMENT,
      `--tokens-file ${file} must hold token ids, whole numbers in 0..${2 ** 32 - 1} (got ${JSON.stringify(values[bad])} at index ${bad})`,
    );
  }
  if (values.length === 0) {
    throw new OpalError(Code.INVALID_ARGUMENT, `--tokens-file ${file} holds no token ids`);
  }
  return Uint32Array.from(values as number[]);
}
