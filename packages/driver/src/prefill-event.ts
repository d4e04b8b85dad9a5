import type { KvChunk } from "@opal/kv";
import type {
  FetchKvAccepted,
  FetchKvCompleted,
  PrefillAccepted,
  PrefillStats,
  PushProgress,
} from "./gen/messages";

/**
 * Events of a prefill (the cases of `opal.device.v1.PrefillResponse`), in order: one "accepted",
 * then "chunk"s in canonical order (or "push_progress" when pushing), then one "completed". Any
 * other end is a failure.
 */
export type PrefillEvent =
  | ({ readonly type: "accepted" } & PrefillAccepted)
  | { readonly type: "chunk"; readonly chunk: KvChunk }
  | ({ readonly type: "push_progress" } & PushProgress)
  | { readonly type: "completed"; readonly stats: PrefillStats };

/**
 * Events of a fetch (the cases of `opal.device.v1.FetchKvResponse`): "accepted", chunks from the
 * resume position, "completed" (whole-cache digest).
 */
export type FetchEvent =
  | ({ readonly type: "accepted" } & FetchKvAccepted)
  | { readonly type: "chunk"; readonly chunk: KvChunk }
  | ({ readonly type: "completed" } & FetchKvCompleted);
