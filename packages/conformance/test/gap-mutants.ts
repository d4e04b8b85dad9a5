import { opal } from "@opal/protocol";
import { type Mutant, mapPrefill } from "./mutant";
import { holdCancelledPrefills } from "./mutant-device";

const v1 = opal.device.v1;

/**
 * Mutants of the gaps a vendor's Python device slipped through (issue #17): sizes and tokens that
 * only the formats beyond the first one offered, or the vocabulary, reveal; and failures whose
 * message must tell the vendor what to fix (a digest's length, a slot never freed).
 */
export const GAP_MUTANTS: readonly Mutant[] = [
  {
    name: "declares a bf16 cache's total_bytes as if its elements were 4 bytes",
    proxy: () => ({
      response(method, message) {
        if (method !== "prefill") return message;
        const response = v1.PrefillResponse.decode(message);
        const descriptor = response.accepted?.descriptor;
        if (descriptor?.dtype !== v1.KvDtype.KV_DTYPE_BF16) return message;
        descriptor.totalBytes = Number(descriptor.totalBytes) * 2;
        return Buffer.from(v1.PrefillResponse.encode(response).finish());
      },
    }),
    fails: ["stream.every-format", "prefill.formats"],
    cites: /PF-18|PF-12/,
  },
  {
    name: "reports a first_token_id equal to the vocabulary size",
    mutation: (mock) =>
      mapPrefill(mock, async function* (events, request) {
        const model = (await mock.listModels()).find((m) => m.modelId === request.modelId);
        for await (const e of events) {
          if (e.type === "completed")
            yield { ...e, stats: { ...e.stats, firstTokenId: model?.vocabSize ?? 0 } };
          else yield e;
        }
      }),
    fails: ["stream.completed-fields", "stream.every-format", "prefill.first-token"],
    cites: /PF-17/,
  },
  {
    name: "sends the first 8 bytes of the digest as kv_digest",
    mutation: (mock) =>
      mapPrefill(mock, async function* (events) {
        for await (const e of events) {
          if (e.type === "completed")
            yield { ...e, stats: { ...e.stats, kvDigest: e.stats.kvDigest.slice(0, 8) } };
          else yield e;
        }
      }),
    fails: ["stream.digest", "stream.every-format"],
    cites: /PF-25: .*kv_digest has 8 bytes, expected 16/,
  },
  {
    name: "never frees the slot of a cancelled prefill (for 8 s)",
    mutation: (mock) => holdCancelledPrefills(mock, 8_000),
    fails: ["deadlines.cancel-frees-slots"],
    cites: /PF-30: the slots were not freed: .*after every running prefill was cancelled/,
  },
];
