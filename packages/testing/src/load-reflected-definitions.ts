import { loadFileDescriptorSetFromBuffer, type PackageDefinition } from "@grpc/proto-loader";

/**
 * Builds a grpc-js package definition from reflected `FileDescriptorProto`s alone (as a dynamic
 * client would): its keys are the fully-qualified services and messages they declare.
 */
export function loadReflectedDefinitions(files: readonly Uint8Array[]): PackageDefinition {
  // A FileDescriptorSet is `repeated FileDescriptorProto file = 1`: concatenate tagged fields.
  const parts: Buffer[] = [];
  for (const file of files) {
    parts.push(Buffer.from([0x0a]), encodeVarint(file.byteLength), Buffer.from(file));
  }
  return loadFileDescriptorSetFromBuffer(Buffer.concat(parts));
}

function encodeVarint(value: number): Buffer {
  const bytes: number[] = [];
  let rest = value;
  while (rest >= 0x80) {
    bytes.push((rest & 0x7f) | 0x80);
    rest = Math.floor(rest / 128);
  }
  bytes.push(rest);
  return Buffer.from(bytes);
}
