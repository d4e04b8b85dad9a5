import { headCountOf, headDimOf, type KvDescriptor } from "@opal/kv";
import { invalidOption } from "../options/invalid-option";
import { descriptorMismatch } from "./sink-errors";

/** A whole number >= `min` for option `field`, or INVALID_ARGUMENT INVALID_FIELD. */
export function checkCount(field: string, value: unknown, min: number): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < min) {
    throw invalidOption(field, `an integer >= ${min}`, value);
  }
  return value;
}

/** What caller-owned per-layer KV memory (vLLM pools, SGLang buffers) was allocated for. */
export interface LayerTarget {
  /** How messages name the memory: "pools" or "buffers". */
  readonly noun: string;
  /** How messages name one per-layer piece of it: "pools" or "layer buffers". */
  readonly layerNoun: string;
  /** The decoder's names of the head count and head size fields. */
  readonly headsField: string;
  readonly headDimField: string;
  readonly attention: "mha" | "mla";
  readonly dtype: string;
  readonly heads: number;
  readonly headDim: number;
  readonly layers: number;
}

/**
 * FAILED_PRECONDITION DESCRIPTOR_MISMATCH unless the cache `d` fits `target`: attention kind,
 * dtype, heads, head size and layer count, each message naming the target's value and the cache's.
 */
export function assertFitsLayerTarget(d: KvDescriptor, target: LayerTarget): void {
  const { noun } = target;
  if (d.attention.kind !== target.attention) {
    throw descriptorMismatch(
      "attention",
      `the ${noun} are ${target.attention}`,
      `the cache is ${d.attention.kind}`,
    );
  }
  if (d.dtype !== target.dtype) {
    throw descriptorMismatch(
      "dtype",
      `the ${noun} hold ${target.dtype}`,
      `the cache is ${d.dtype}`,
    );
  }
  if (headCountOf(d) !== target.heads) {
    throw descriptorMismatch(
      target.headsField,
      `the ${noun} hold ${target.heads} heads`,
      `the cache carries ${headCountOf(d)} (heads ${d.headRange.start}..${d.headRange.start + d.headRange.count - 1})`,
    );
  }
  if (headDimOf(d) !== target.headDim) {
    throw descriptorMismatch(
      target.headDimField,
      `the ${noun} hold ${target.headDim}`,
      `the cache has ${headDimOf(d)}`,
    );
  }
  if (d.numLayers !== target.layers) {
    throw descriptorMismatch(
      "layers",
      `${target.layers} ${target.layerNoun} were given`,
      `the cache has ${d.numLayers} layers`,
    );
  }
}
