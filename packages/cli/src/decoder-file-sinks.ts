import {
  assertFreeOutput,
  createLmcacheSink,
  createSglangSink,
  type KvSink,
  writeAtomicFile,
  writeAtomicFolder,
} from "@opal/client";
import type { ModelInfo } from "@opal/driver";
import { dtypeByteSize, encodeSafetensors, type KvDtype, toSafetensorsDtype } from "@opal/kv";

/**
 * SGLang's per-layer token-major buffers as one safetensors file: tensors `k_buffer.{layer}` and
 * `v_buffer.{layer}` (MLA: `kv_buffer.{layer}`) of shape `[tokens + 1, heads, head_dim]`, slot 0
 * being SGLang's padding slot and the prompt's tokens in slots 1..tokens. Written on commit to a
 * temporary file created exclusively in the same folder, then published (`writeAtomicFile`): an
 * existing non-empty `path` is refused (ALREADY_EXISTS, at `open` and atomically at commit) unless
 * `replace`.
 */
export function createSglangFileSink(
  path: string,
  model: ModelInfo,
  tokenCount: number,
  dtype: KvDtype,
  replace = false,
): KvSink<{ path: string }> {
  const a = model.attention;
  const headNum = a.kind === "mha" ? a.numKvHeads : 1;
  const headDim = a.kind === "mha" ? a.headDim : a.latentDim + a.ropeDim;
  const slotBytes = headNum * headDim * dtypeByteSize(dtype);
  const buffers = (n: number) =>
    Array.from({ length: model.numLayers }, () => new Uint8Array((tokenCount + 1) * slotBytes * n));
  const kBuffers = buffers(1);
  const vBuffers = a.kind === "mha" ? buffers(1) : undefined;
  const slots = Array.from({ length: tokenCount }, (_, i) => i + 1);
  const inner = createSglangSink({
    kBuffers,
    ...(vBuffers ? { vBuffers } : {}),
    slots,
    dtype,
    headNum,
    headDim,
    ...(a.kind === "mla" ? { attention: "mla" as const } : {}),
  });
  return {
    async open(descriptor) {
      await assertFreeOutput(path, replace);
      await inner.open(descriptor);
    },
    writeLayer: (layer) => inner.writeLayer(layer),
    async commit(stats) {
      await inner.commit(stats);
      const shape = [tokenCount + 1, headNum, headDim];
      const st = toSafetensorsDtype(dtype);
      const tensors: Record<string, { dtype: typeof st; shape: number[]; data: Uint8Array }> = {};
      for (let l = 0; l < model.numLayers; l++) {
        tensors[`${vBuffers ? "k_buffer" : "kv_buffer"}.${l}`] = {
          dtype: st,
          shape,
          data: kBuffers[l]!,
        };
        if (vBuffers) tensors[`v_buffer.${l}`] = { dtype: st, shape, data: vBuffers[l]! };
      }
      await writeAtomicFile(
        path,
        encodeSafetensors(tensors, {
          metadata: { format: "sglang-token-major", padding_slot: "0" },
        }),
        { replace },
      );
      return { path };
    },
    abort: (reason) => inner.abort(reason),
  };
}

/**
 * LMCache's 256-token chunks as a folder: `chunk-00000.bin`… (each LMCache v1's `KV_2LTD`,
 * `[2, layers, tokens, heads * head_dim]`, raw little-endian in the cache's dtype) and
 * `manifest.json` describing them. The folder is written on commit under a temporary name created
 * exclusively beside it, then renamed (`writeAtomicFolder`): an existing non-empty `folder` is
 * refused (ALREADY_EXISTS, at `open` and atomically at commit) unless `replace`, which replaces it
 * whole; nothing else is ever deleted.
 */
export function createLmcacheFolderSink(
  folder: string,
  replace = false,
): KvSink<{ folder: string; chunks: number }> {
  const inner = createLmcacheSink();
  return {
    keepsLayerViews: true,
    async open(descriptor) {
      await assertFreeOutput(folder, replace);
      await inner.open(descriptor);
    },
    writeLayer: (layer) => inner.writeLayer(layer),
    async commit(stats) {
      const receipt = await inner.commit(stats);
      const files = receipt.chunks.map((_, i) => `chunk-${String(i).padStart(5, "0")}.bin`);
      const manifest = {
        format: "lmcache KV_2LTD",
        chunkSizeTokens: receipt.chunkSizeTokens,
        tokenStart: receipt.tokenStart,
        descriptor: receipt.descriptor,
        files,
      };
      await writeAtomicFolder(
        folder,
        [
          ...receipt.chunks.map((chunk, i) => [files[i]!, chunk] as const),
          ["manifest.json", `${JSON.stringify(manifest, null, 2)}\n`] as const,
        ],
        { replace },
      );
      return { folder, chunks: receipt.chunks.length };
    },
    abort: (reason) => inner.abort(reason),
  };
}
