import { type KvDtype, type VllmPoolLayout, vllmStandardGeometry } from "@opal/kv";

/** One layer's KV tensor as torch reports it: `list(kv_cache.shape)` and `kv_cache.stride()`. */
export interface VllmLayerTensor {
  readonly shape: readonly number[];
  /** Element strides (torch's `stride()`), not bytes. */
  readonly stride: readonly number[];
}

interface PoolFacts {
  readonly attention: "mha" | "mla";
  readonly numKvHeads: number;
  readonly headSize: number;
  readonly dtype: KvDtype;
  readonly numBlocks: number;
  readonly blockSizeTokens: number;
  readonly numLayers?: number;
  readonly kernelBlockSizeTokens?: number;
  readonly pagePaddedBytes?: number;
  readonly layerStrideBytes?: number;
  readonly blockStrideBytes?: number;
  readonly offsetBytes?: number;
}

/**
 * The shape and element strides vLLM gives one layer's KV tensor in `layout`, and the layout's name
 * for messages. vLLM <= 0.28: the backend's `get_kv_cache_shape` permuted by its stride order
 * (flash_attn.py, flashinfer.py); vLLM >= 0.29: the `[B, H, N, C]` view of `create_kv_cache_views`.
 */
export function expectedLayerTensor(
  layout: VllmPoolLayout,
  facts: PoolFacts,
): { shape: number[]; stride: number[]; name: string } {
  if (layout.family === "standard") {
    const g = vllmStandardGeometry(facts, {
      layout: layout.layout,
      numLayers: facts.numLayers ?? 1,
      numBlocks: facts.numBlocks,
      blockTable: [],
      blockSizeTokens: facts.blockSizeTokens,
      kernelBlockSizeTokens: facts.kernelBlockSizeTokens,
      pagePaddedBytes: facts.pagePaddedBytes,
      layerStrideBytes: facts.layerStrideBytes,
      blockStrideBytes: facts.blockStrideBytes,
      offsetBytes: facts.offsetBytes,
    });
    return {
      shape: [...g.layerViewShape],
      stride: [...g.layerViewStrides],
      name: `${layout.layout}, vLLM >= 0.29`,
    };
  }
  const { numBlocks: b, blockSizeTokens: n, numKvHeads: h, headSize: d } = facts;
  if (facts.attention === "mla") {
    return { shape: [b, n, d], stride: [n * d, d, 1], name: "mla, vLLM <= 0.28" };
  }
  const flash = layout.order === "flash_attn";
  const shape = flash ? [2, b, n, h, d] : [b, 2, n, h, d];
  const order = layout.physicalLayout === "nhd" ? [0, 1, 2, 3, 4] : [0, 1, 3, 2, 4];
  const stride = [0, 0, 0, 0, 0];
  let step = 1;
  for (let i = 4; i >= 0; i--) {
    const axis = order[i] as number;
    stride[axis] = step;
    step *= shape[axis] as number;
  }
  return { shape, stride, name: `${layout.order} ${layout.physicalLayout}, vLLM <= 0.28` };
}

/**
 * True when `got` is the tensor `expected` describes: equal shapes, and equal strides on every axis
 * longer than 1 (torch may report any stride for an axis of size 1; it addresses nothing).
 */
export function sameLayerTensor(got: VllmLayerTensor, expected: VllmLayerTensor): boolean {
  if (!Array.isArray(got?.shape) || !Array.isArray(got?.stride)) return false;
  if (got.shape.length !== expected.shape.length || got.stride.length !== expected.stride.length)
    return false;
  return expected.shape.every(
    (n, i) => got.shape[i] === n && (n === 1 || got.stride[i] === expected.stride[i]),
  );
}
