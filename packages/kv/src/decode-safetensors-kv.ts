import { assertValidDescriptor, type KvDescriptor, type KvPart, partsOf } from "./descriptor";
import { fromKvParts, type KvCache } from "./kv-cache";
import { KvFormatError } from "./kv-format-error";
import { type DecodeSafetensorsOptions, decodeSafetensors } from "./safetensors";

/** Key of `__metadata__` holding an OPAL KV cache's `KvDescriptor` as JSON. */
export const SAFETENSORS_KV_DESCRIPTOR_KEY = "descriptor";

/**
 * Reads a KV cache from an OPAL safetensors file: `__metadata__.descriptor` (a `KvDescriptor` as
 * JSON) and tensors `layers.<l>.<part>`. The descriptor is parsed and fully checked
 * ({@link assertValidDescriptor}: fields, bounds, size arithmetic) before anything is allocated for
 * its layers, so a small hostile file cannot make it allocate in proportion to what it claims. The
 * cache's parts are views of `bytes`. Throws {@link KvFormatError}: the file's own reasons (see
 * `decodeSafetensors`), INVALID_HEADER when the descriptor is missing or not JSON,
 * INVALID_DESCRIPTOR (or the descriptor's other reasons) when it is not a valid descriptor, and
 * SHAPE_MISMATCH when a tensor is missing or of the wrong size.
 */
export function decodeSafetensorsKv(
  bytes: Uint8Array,
  options: DecodeSafetensorsOptions = {},
): KvCache {
  const file = decodeSafetensors(bytes, options);
  const json = file.metadata[SAFETENSORS_KV_DESCRIPTOR_KEY];
  if (json === undefined) {
    throw new KvFormatError(
      "INVALID_HEADER",
      `a safetensors file without an OPAL descriptor in __metadata__ (key "${SAFETENSORS_KV_DESCRIPTOR_KEY}")`,
      { field: `__metadata__.${SAFETENSORS_KV_DESCRIPTOR_KEY}` },
    );
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(json);
  } catch (error) {
    throw new KvFormatError(
      "INVALID_HEADER",
      `the OPAL descriptor in __metadata__ is not JSON: ${(error as Error).message}`,
      { field: `__metadata__.${SAFETENSORS_KV_DESCRIPTOR_KEY}`, cause: error },
    );
  }
  // Checked first: numLayers, shapes and sizes are bounded before the layer table is built.
  assertValidDescriptor(parsed as KvDescriptor);
  const descriptor = parsed as KvDescriptor;
  // The layer table below is then bounded by the tensors the file really holds.
  const expectedTensors = descriptor.numLayers * partsOf(descriptor).length;
  if (file.tensors.size !== expectedTensors) {
    throw new KvFormatError(
      "SHAPE_MISMATCH",
      `the descriptor's ${descriptor.numLayers} layers need ${expectedTensors} tensors, the file holds ${file.tensors.size}`,
      { field: "tensors" },
    );
  }
  const layers: Partial<Record<KvPart, Uint8Array>>[] = [];
  for (let layer = 0; layer < descriptor.numLayers; layer++) {
    const parts: Partial<Record<KvPart, Uint8Array>> = {};
    for (const part of partsOf(descriptor)) {
      const tensor = file.tensors.get(`layers.${layer}.${part}`);
      if (tensor) parts[part] = tensor.data;
    }
    layers.push(parts);
  }
  return fromKvParts(descriptor, layers);
}
