import { existsSync, statSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { Tokenizer } from "@huggingface/tokenizers";
import { Code, OpalError } from "@opal/core";

/** Encodes a prompt into the token ids a model reads. */
export type EncodePrompt = (text: string) => Uint32Array;

async function readJson(path: string, flag: string): Promise<object> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    const e = error as NodeJS.ErrnoException;
    throw new OpalError(Code.NOT_FOUND, `cannot read ${flag} ${path}: ${e.code ?? e.message}`);
  }
  try {
    return JSON.parse(text) as object;
  } catch (error) {
    throw new OpalError(
      Code.INVALID_ARGUMENT,
      `${flag} ${path} is not JSON: ${(error as Error).message}`,
    );
  }
}

/**
 * The model's own tokenizer from a Hugging Face `tokenizer.json` (or a folder holding one), with
 * the `tokenizer_config.json` beside it when there is one, run by `@huggingface/tokenizers`. Its
 * encoder adds the model's special tokens (BOS) as the tokenizer's post-processor says. NOT_FOUND
 * for a missing file; INVALID_ARGUMENT for a file that is not a tokenizer, or text with a piece the
 * vocabulary has no id for.
 */
export async function loadTokenizer(path: string): Promise<EncodePrompt> {
  const file =
    existsSync(path) && statSync(path).isDirectory() ? join(path, "tokenizer.json") : path;
  const json = await readJson(file, "--tokenizer");
  const configPath = join(dirname(file), "tokenizer_config.json");
  const config = existsSync(configPath) ? await readJson(configPath, "--tokenizer's config") : {};
  let tokenizer: Tokenizer;
  try {
    tokenizer = new Tokenizer(json, config);
  } catch (error) {
    throw new OpalError(
      Code.INVALID_ARGUMENT,
      `--tokenizer ${file} is not a Hugging Face tokenizer.json: ${(error as Error).message}`,
    );
  }
  return (text) => {
    const { ids, tokens } = tokenizer.encode(text);
    const missing = ids.findIndex((id) => !Number.isInteger(id));
    if (missing >= 0) {
      throw new OpalError(
        Code.INVALID_ARGUMENT,
        `--tokenizer ${file} has no id for ${JSON.stringify(tokens[missing])} (piece ${missing} of the prompt) and no unknown token`,
      );
    }
    return Uint32Array.from(ids);
  };
}
