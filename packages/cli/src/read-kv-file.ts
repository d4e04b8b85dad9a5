import { createReadStream } from "node:fs";
import { open, readFile, stat } from "node:fs/promises";
import { Code, OpalError } from "@opal/core";
import {
  decodeOkv,
  decodeSafetensors,
  decodeSafetensorsKv,
  fromKvParts,
  type KvCache,
  type KvDescriptor,
  type KvPart,
  OKV_MAGIC,
} from "@opal/kv";

/** The file formats `opal inspect` and `opal convert` read. */
export type KvFileFormat = "okv" | "safetensors";

/**
 * Detects the format of `path` from its first bytes. NOT_FOUND when it cannot be opened,
 * INVALID_ARGUMENT when it is not a regular file.
 */
export async function detectKvFile(path: string): Promise<KvFileFormat> {
  const handle = await open(path, "r").catch((error: NodeJS.ErrnoException) => {
    throw new OpalError(Code.NOT_FOUND, `cannot open ${path}: ${error.code ?? error.message}`);
  });
  try {
    if (!(await handle.stat()).isFile()) {
      throw new OpalError(
        Code.INVALID_ARGUMENT,
        `${path} is not a file: expected a .okv or safetensors file`,
      );
    }
    const head = new Uint8Array(8);
    await handle.read(head, 0, 8, 0);
    if (OKV_MAGIC.every((byte, i) => head[i] === byte)) return "okv";
    return "safetensors";
  } finally {
    await handle.close();
  }
}

/**
 * Reads and verifies a `.okv` file (every frame's CRC32C and the trailer's digest; streamed, memory
 * bounded by the cache itself) or a safetensors file written by the safetensors sink.
 */
export async function readKvFile(
  path: string,
): Promise<{ cache: KvCache; format: KvFileFormat; byteLength: number }> {
  const format = await detectKvFile(path);
  const byteLength = (await stat(path)).size;
  if (format === "okv") {
    const layers: Partial<Record<KvPart, Uint8Array>>[] = [];
    let descriptor: KvDescriptor | undefined;
    for await (const event of decodeOkv(
      createReadStream(path, { highWaterMark: 1 << 20 }) as AsyncIterable<Uint8Array>,
    )) {
      if (event.kind === "header") descriptor = event.descriptor;
      else if (event.kind === "layer") layers[event.layer.layer] = event.layer.parts;
    }
    return { cache: fromKvParts(descriptor!, layers), format, byteLength };
  }
  const bytes = new Uint8Array(await readFile(path));
  try {
    decodeSafetensors(bytes);
  } catch (error) {
    const opal = OpalError.from(error);
    throw new OpalError(
      opal.code,
      `${path} is neither a .okv file (no OKV magic) nor a safetensors file: ${opal.rawMessage}`,
      { cause: error },
    );
  }
  try {
    // The descriptor is checked before anything is allocated for the layers it claims.
    return { cache: decodeSafetensorsKv(bytes), format, byteLength };
  } catch (error) {
    const opal = OpalError.from(error);
    throw new OpalError(opal.code, `${path}: ${opal.rawMessage}`, {
      reason: opal.reason,
      cause: error,
    });
  }
}
