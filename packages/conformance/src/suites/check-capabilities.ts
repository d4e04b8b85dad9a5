import { opal } from "@opal/protocol";

const v1 = opal.device.v1;

/**
 * The ways capabilities `c` break the table of identity.md (`ID-4`, `ID-6`, `TR-2`, `PF-35`,
 * `PF-36`, `GEN-3`, `TR-7`), each led by its rule id; empty when they conform.
 */
export function checkCapabilities(c: opal.device.v1.ICapabilities): string[] {
  const problems: string[] = [];
  const enumList = (
    name: string,
    values: readonly number[] | null | undefined,
    table: object,
    nonEmpty: boolean,
  ) => {
    const list = values ?? [];
    if (nonEmpty && list.length === 0) problems.push(`ID-4: ${name} is empty`);
    if (list.includes(0)) problems.push(`GEN-3: ${name} lists an UNSPECIFIED value`);
    if (new Set(list).size !== list.length) problems.push(`ID-4: ${name} has duplicates`);
    for (const v of list)
      if (!(v in table)) problems.push(`ID-4: ${name} lists unknown value ${v}`);
  };
  enumList("dtypes", c.dtypes, v1.KvDtype, true);
  enumList("layouts", c.layouts, v1.KvLayout, true);
  enumList("scale_schemes", c.scaleSchemes, v1.KvScaleScheme, false);
  enumList("data_planes", c.dataPlanes, v1.DataPlaneKind, false);
  const blocks = c.blockSizesTokens ?? [];
  if (blocks.length === 0) problems.push("ID-4: block_sizes_tokens is empty");
  if (blocks.some((b) => b < 1)) problems.push("ID-4: a block size is 0");
  if ((c.maxPromptTokens ?? 0) < 1) problems.push("ID-4: max_prompt_tokens < 1");
  if ((c.maxConcurrentPrefills ?? 0) < 1) problems.push("ID-4: max_concurrent_prefills < 1");
  const maxChunk = c.maxChunkBytes ?? 0;
  const preferred = c.preferredChunkBytes ?? 0;
  if (maxChunk < 1 || maxChunk > 67_108_864)
    problems.push(`ID-4: max_chunk_bytes ${maxChunk} outside 1..67108864`);
  if (preferred < 1 || preferred > maxChunk)
    problems.push(
      `ID-4: preferred_chunk_bytes ${preferred} outside 1..max_chunk_bytes (${maxChunk})`,
    );
  const maxMessage = c.maxMessageBytes ?? 0;
  if (maxMessage < maxChunk + 4096 || maxMessage > 67_174_400) {
    problems.push(
      `ID-4/TR-2: max_message_bytes ${maxMessage} outside max_chunk_bytes + 4096 (${maxChunk + 4096})..67174400`,
    );
  }
  const retention = c.retention?.maxRetentionSeconds ?? 0;
  if (c.features?.resume && retention === 0)
    problems.push("ID-6: features.resume without retention");
  if (retention === 0 && Number(c.retention?.maxRetainedBytes ?? 0) !== 0) {
    problems.push("ID-4: max_retained_bytes set although retention is unsupported");
  }
  const n = c.numerics;
  if (!n) problems.push("ID-4: numerics missing");
  else {
    if (!n.deviceKind) problems.push("ID-4: numerics.device_kind is UNSPECIFIED");
    const abs = n.maxAbsError ?? 0;
    const rel = n.maxRelError ?? 0;
    if (!(Number.isFinite(abs) && abs >= 0 && Number.isFinite(rel) && rel >= 0)) {
      problems.push(`PF-35: numerics bounds must be finite and >= 0 (abs ${abs}, rel ${rel})`);
    }
    if (n.bitExact && (abs !== 0 || rel !== 0))
      problems.push("PF-35: bit_exact with non-zero error bounds");
    if (
      n.bitExact &&
      (n.deviceKind === v1.DeviceKind.DEVICE_KIND_OPTICAL ||
        n.deviceKind === v1.DeviceKind.DEVICE_KIND_ANALOG)
    ) {
      problems.push("PF-36: optical and analog devices must not claim bit_exact");
    }
  }
  const transport = (c.dataPlanes ?? []).includes(v1.DataPlaneKind.DATA_PLANE_KIND_TRANSPORT);
  if (transport !== (c.transports ?? []).length > 0)
    problems.push("ID-4: transports must be non-empty iff DATA_PLANE_KIND_TRANSPORT is listed");
  if ((c.features?.compressionCodecs ?? []).length > 0)
    problems.push("TR-7: compression_codecs must be empty in 1.0");
  return problems;
}
