import { invalidField, Reason } from "@opal/core";
import type { KvScaleScheme } from "@opal/kv";
import type { DeviceCapabilities, KvFormat, ModelInfo, ReceivedKvFormat } from "./gen/messages";
import { quote } from "./quote";

/**
 * Checks a received `kv_format` against the device and the model, in `PF-1` order (dtype, layout,
 * scale scheme, block size; `GEN-3`: UNSPECIFIED is INVALID_FIELD, an unknown or unsupported value
 * the field's own reason), so that it holds values of this version only. Throws
 * INVALID_ARGUMENT with UNSUPPORTED_DTYPE, UNSUPPORTED_LAYOUT, UNSUPPORTED_SCALE_SCHEME,
 * UNSUPPORTED_BLOCK_SIZE or INVALID_FIELD.
 */
export function assertKvFormat(
  format: ReceivedKvFormat,
  caps: DeviceCapabilities,
  model: ModelInfo,
): asserts format is KvFormat {
  const { dtype, layout, scaleScheme } = format;
  if (!dtype) throw invalidField("kv_format.dtype", "required, got UNSPECIFIED");
  if (!isOneOf(caps.dtypes, dtype)) {
    throw invalidField(
      "kv_format.dtype",
      `expected one of [${caps.dtypes}], got ${quote(dtype)}`,
      Reason.UNSUPPORTED_DTYPE,
    );
  }
  const validLayouts =
    model.attention.kind === "mla" ? caps.layouts.filter((l) => l === "nhd") : caps.layouts;
  if (!layout) throw invalidField("kv_format.layout", "required, got UNSPECIFIED");
  if (!isOneOf(validLayouts, layout)) {
    throw invalidField(
      "kv_format.layout",
      `expected one of [${validLayouts}], got ${quote(layout)}`,
      Reason.UNSUPPORTED_LAYOUT,
    );
  }
  const quantized = dtype.startsWith("fp8") || dtype === "int8";
  const schemes: KvScaleScheme[] = quantized ? ["none", ...caps.scaleSchemes] : ["none"];
  if (dtype === "int8") schemes.splice(schemes.indexOf("none"), 1);
  if (!scaleScheme) throw invalidField("kv_format.scale_scheme", "required, got UNSPECIFIED");
  if (!isOneOf(schemes, scaleScheme)) {
    throw invalidField(
      "kv_format.scale_scheme",
      `expected one of [${schemes}] for ${dtype}, got ${quote(scaleScheme)}`,
      Reason.UNSUPPORTED_SCALE_SCHEME,
    );
  }
  if (!caps.blockSizesTokens.includes(format.blockSizeTokens)) {
    throw invalidField(
      "kv_format.block_size_tokens",
      `expected one of [${caps.blockSizesTokens}], got ${format.blockSizeTokens}`,
      Reason.UNSUPPORTED_BLOCK_SIZE,
    );
  }
}

/** True when `value` is one of `values` (narrowing a received enum to the ones this version knows). */
function isOneOf<T extends string>(values: readonly T[], value: string): value is T {
  return (values as readonly string[]).includes(value);
}
