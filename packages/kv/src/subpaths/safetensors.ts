/**
 * `@opal/kv/safetensors`: safetensors files (encode, decode, dtype names, a KV cache stored with
 * its descriptor) and vLLM's ExampleConnector handoff, whose per-layer files are safetensors. The
 * same names as the root export `@opal/kv`.
 *
 * @packageDocumentation
 */

export { decodeSafetensorsKv, SAFETENSORS_KV_DESCRIPTOR_KEY } from "../decode-safetensors-kv";
export type {
  DecodeSafetensorsOptions,
  EncodeSafetensorsOptions,
  SafetensorsDtype,
  SafetensorsFile,
  SafetensorsInput,
  SafetensorsTensor,
} from "../safetensors";
export {
  decodeSafetensors,
  encodeSafetensors,
  encodeSafetensorsHeader,
  encodeSafetensorsPieces,
  fromSafetensorsDtype,
  SAFETENSORS_DTYPE_SIZES,
  SAFETENSORS_MAX_HEADER_BYTES,
  toSafetensorsDtype,
} from "../safetensors";
export type {
  VllmExampleFolderNames,
  VllmExampleFolderOptions,
  VllmExampleHandoffOptions,
} from "../vllm-example-connector";
export {
  assertVllmExampleTensorParallel,
  readVllmExampleFolder,
  vllmExampleFolderName,
  vllmExampleFolders,
  vllmExampleTokenCount,
  vllmLayerName,
  writeVllmExampleFolder,
  writeVllmExampleHandoff,
} from "../vllm-example-connector";
export type {
  VllmExampleDecodeOptions,
  VllmExampleFit,
  VllmExampleLayerOptions,
  VllmExampleVersion,
  VllmFp8Cache,
} from "../vllm-example-layer";
export {
  decodeVllmExampleLayer,
  encodeVllmExampleLayer,
  VLLM_EXAMPLE_DEFAULT_VERSION,
  VLLM_EXAMPLE_VERSIONS,
  vllmExampleFits,
  vllmStaticScale,
} from "../vllm-example-layer";
