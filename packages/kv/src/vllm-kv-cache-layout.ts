import type { KvLayout } from "./descriptor";
import { KvFormatError } from "./kv-format-error";
import type { VllmPagedOrder } from "./vllm-paged";

/**
 * The members of vLLM's `KVCacheLayout` (vLLM >= 0.29, PR #51718, RFC #42082), as in
 * `vllm/v1/kv_cache_layout.py` at commit e78684ecbf33f50e037f78beb0838aa2eac7490d. Each names the
 * physical (memory) order of the logical axes `[L, B, H, N, C]`: layer, block, KV head, token in
 * the block, content bytes (`C = (head_size + head_size_v) * dtype bytes`, K then V).
 */
export const VLLM_KV_CACHE_LAYOUTS = [
  "LBNHC",
  "LBHNC",
  "LHBNC",
  "BLHNC",
  "BLNHC",
  "BHLNC",
] as const;

/** One of {@link VLLM_KV_CACHE_LAYOUTS}. */
export type VllmKvCacheLayout = (typeof VLLM_KV_CACHE_LAYOUTS)[number];

/** vLLM >= 0.29's aliases of the older layout names: NHD is LBNHC (its default), HND is LBHNC. */
export const VLLM_KV_CACHE_LAYOUT_ALIASES: Readonly<Record<"NHD" | "HND", VllmKvCacheLayout>> = {
  NHD: "LBNHC",
  HND: "LBHNC",
};

/** Names of vLLM <= 0.28's per-layer pools: backend order and in-block order. */
export const VLLM_LEGACY_LAYOUTS = [
  "flash_attn_nhd",
  "flash_attn_hnd",
  "flashinfer_nhd",
  "flashinfer_hnd",
] as const;

/** One of {@link VLLM_LEGACY_LAYOUTS}. */
export type VllmLegacyLayout = (typeof VLLM_LEGACY_LAYOUTS)[number];

/**
 * Stride permutation of each member: physical position i holds logical axis `order[i]` of
 * `[L, B, H, N, C]` (0..4), the value of the enum member in `kv_cache_layout.py`.
 */
const STRIDE_ORDERS: Readonly<Record<VllmKvCacheLayout, readonly number[]>> = {
  LBHNC: [0, 1, 2, 3, 4],
  LBNHC: [0, 1, 3, 2, 4],
  LHBNC: [0, 2, 1, 3, 4],
  BLHNC: [1, 0, 2, 3, 4],
  BLNHC: [1, 0, 3, 2, 4],
  BHLNC: [1, 2, 0, 3, 4],
};

/** The stride permutation of `layout` over `[L, B, H, N, C]` (`KVCacheLayout.stride_order`). */
export function vllmStrideOrder(layout: VllmKvCacheLayout): readonly number[] {
  return STRIDE_ORDERS[layout];
}

/** How a vLLM pool is laid out, as {@link resolveVllmPoolLayout} decided from explicit options. */
export type VllmPoolLayout =
  | {
      /** vLLM <= 0.28: one tensor per layer, K and V in separate planes. */
      readonly family: "legacy";
      readonly order: VllmPagedOrder;
      readonly physicalLayout: KvLayout;
    }
  | {
      /** vLLM >= 0.29: one allocation, K and V side by side per head and token. */
      readonly family: "standard";
      readonly layout: VllmKvCacheLayout;
    };

/** What {@link resolveVllmPoolLayout} reads; every field is the caller's explicit statement. */
export interface VllmPoolLayoutOptions {
  /**
   * A `KVCacheLayout` member ("LBNHC", ...), a legacy name ("flash_attn_nhd", ...), or with
   * `vllmVersion` the short names "NHD"/"HND" (any case).
   */
  readonly layout?: string;
  /** The decoder's vLLM version, "major.minor[.patch]": <= 0.28 legacy, >= 0.29 standardized. */
  readonly vllmVersion?: string;
  /** vLLM <= 0.28's backend order (with `vllmVersion` <= 0.28): "flash_attn" or "flashinfer". */
  readonly order?: VllmPagedOrder;
  /** Attention kind; mla needs no backend order in the legacy family. Default "mha". */
  readonly attention?: "mha" | "mla";
}

function refuse(field: string, message: string): never {
  throw new KvFormatError("UNSUPPORTED_LAYOUT", `${field}: ${message}`, { field });
}

/** True for vLLM <= 0.28, false for >= 0.29; UNSUPPORTED_LAYOUT for an unreadable version. */
export function isLegacyVllmVersion(version: string): boolean {
  const match =
    typeof version === "string" ? /^v?(\d+)\.(\d+)(?:\.\d+)?(?:\S*)$/.exec(version) : null;
  if (!match)
    refuse(
      "vllmVersion",
      `expected "major.minor" such as "0.28" or "0.29", got ${JSON.stringify(version)}`,
    );
  return Number(match[1]) === 0 && Number(match[2]) <= 28;
}

const LEGACY_PARTS: Readonly<Record<VllmLegacyLayout, [VllmPagedOrder, KvLayout]>> = {
  flash_attn_nhd: ["flash_attn", "nhd"],
  flash_attn_hnd: ["flash_attn", "hnd"],
  flashinfer_nhd: ["flashinfer", "nhd"],
  flashinfer_hnd: ["flashinfer", "hnd"],
};

/**
 * The pool layout the options state, never a guess. Each vLLM family stores the same bytes per
 * pool, so a size cannot tell them apart; the caller must say which. UNSUPPORTED_LAYOUT (naming the
 * field) when the options are missing, contradict each other or name nothing vLLM has:
 * - a `KVCacheLayout` member needs no version (a version <= 0.28 contradicts it);
 * - a legacy name needs no version (a version >= 0.29 contradicts it);
 * - "NHD"/"HND" need `vllmVersion`: >= 0.29 makes them LBNHC/LBHNC, <= 0.28 makes them the in-block
 *   order of `order`'s legacy pool;
 * - `vllmVersion` <= 0.28 with `order` (and optionally "nhd"/"hnd", default nhd) is the legacy pool,
 *   as before vLLM 0.29; an mla pool needs no `order`;
 * - `vllmVersion` >= 0.29 alone is refused: vLLM resolves the layout per attention backend and
 *   `VLLM_KV_CACHE_LAYOUT`, so the caller must pass the one their decoder resolved.
 */
export function resolveVllmPoolLayout(options: VllmPoolLayoutOptions): VllmPoolLayout {
  const { layout, vllmVersion, order } = options;
  const mla = options.attention === "mla";
  const legacyVersion = vllmVersion === undefined ? undefined : isLegacyVllmVersion(vllmVersion);
  if (order !== undefined && order !== "flash_attn" && order !== "flashinfer")
    refuse("order", `expected "flash_attn" or "flashinfer", got ${JSON.stringify(order)}`);
  if (layout !== undefined && typeof layout !== "string")
    refuse("layout", `expected a layout name, got ${String(layout)}`);
  const upper = layout?.toUpperCase();
  if (layout !== undefined && (VLLM_KV_CACHE_LAYOUTS as readonly string[]).includes(layout)) {
    if (legacyVersion)
      refuse(
        "layout",
        `${layout} is a vLLM >= 0.29 KVCacheLayout, but vllmVersion is ${vllmVersion}`,
      );
    return { family: "standard", layout: layout as VllmKvCacheLayout };
  }
  if (layout !== undefined && (VLLM_LEGACY_LAYOUTS as readonly string[]).includes(layout)) {
    if (legacyVersion === false)
      refuse("layout", `${layout} is a vLLM <= 0.28 pool, but vllmVersion is ${vllmVersion}`);
    const [legacyOrder, physicalLayout] = LEGACY_PARTS[layout as VllmLegacyLayout];
    return { family: "legacy", order: legacyOrder, physicalLayout: mla ? "nhd" : physicalLayout };
  }
  if (layout !== undefined && upper !== "NHD" && upper !== "HND") {
    refuse(
      "layout",
      `expected one of ${[...VLLM_KV_CACHE_LAYOUTS, "NHD", "HND", ...VLLM_LEGACY_LAYOUTS].join(", ")}, got ${JSON.stringify(layout)}`,
    );
  }
  if (legacyVersion === undefined) {
    refuse(
      layout === undefined ? "layout" : "vllmVersion",
      layout === undefined
        ? `required: a KVCacheLayout (${VLLM_KV_CACHE_LAYOUTS.join(", ")}) for vLLM >= 0.29, a legacy name (${VLLM_LEGACY_LAYOUTS.join(", ")}), or vllmVersion "0.28" with order`
        : `required with layout ${JSON.stringify(layout)}: vLLM <= 0.28 pools (K and V planes) and vLLM >= 0.29 pools (${layout.toUpperCase() === "NHD" ? "LBNHC" : "LBHNC"}, K and V side by side) have the same size, so the name alone does not say which`,
    );
  }
  if (!legacyVersion) {
    if (upper === undefined) {
      refuse(
        "layout",
        `required with vllmVersion ${vllmVersion}: vLLM resolves its KVCacheLayout per attention backend and VLLM_KV_CACHE_LAYOUT; pass the one your decoder uses (${VLLM_KV_CACHE_LAYOUTS.join(", ")})`,
      );
    }
    if (order !== undefined)
      refuse(
        "order",
        `vLLM ${vllmVersion} has no per-backend pool order (it is a vLLM <= 0.28 option)`,
      );
    return { family: "standard", layout: VLLM_KV_CACHE_LAYOUT_ALIASES[upper as "NHD" | "HND"] };
  }
  if (order === undefined && !mla) {
    refuse(
      "order",
      `required with vllmVersion ${vllmVersion}: "flash_attn" (2, num_blocks, ...) or "flashinfer" (num_blocks, 2, ...)`,
    );
  }
  const physicalLayout: KvLayout = upper === "HND" && !mla ? "hnd" : "nhd";
  return { family: "legacy", order: order ?? "flash_attn", physicalLayout };
}
