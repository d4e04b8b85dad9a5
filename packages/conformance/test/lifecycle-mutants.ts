import { createHash } from "node:crypto";
import { Code, OpalError, Reason } from "@opal/core";
import type { FetchEvent, ReceivedPrefillRequest } from "@opal/driver";
import { opal } from "@opal/protocol";
import { type Mutant, mapEvents, mapPrefill } from "./mutant";
import { holdCancelledPrefills, overrideDriver } from "./mutant-device";

/** A request's body (everything but request_id), hashed. */
const bodyKey = (r: ReceivedPrefillRequest) =>
  createHash("sha256")
    .update(JSON.stringify({ ...r, requestId: "", promptTokenIds: [...r.promptTokenIds] }))
    .digest("hex")
    .slice(0, 12);

/** Mutants of request_id idempotence, tenancy, cancellation and retention. */
export const LIFECYCLE_MUTANTS: readonly Mutant[] = [
  {
    // The server host answers PF-6 for running calls, so the mutant sits in front of it.
    name: "keys its request table by request_id and body (wire proxy renames a new body)",
    proxy: () => {
      const running = new Map<string, string>();
      let renamed = 0;
      return {
        request(method, bytes) {
          if (method !== "prefill") return { bytes };
          const request = opal.device.v1.PrefillRequest.decode(bytes);
          const id = request.requestId;
          // The body without request_id and priority (prefill.md §3).
          const body = Buffer.from(
            opal.device.v1.PrefillRequest.encode({
              ...request,
              requestId: "",
              priority: 0,
            }).finish(),
          ).toString("hex");
          const earlier = running.get(id);
          if (earlier !== undefined && earlier !== body) {
            request.requestId = `${id}.body-${++renamed}`;
            return { bytes: Buffer.from(opal.device.v1.PrefillRequest.encode(request).finish()) };
          }
          if (earlier !== undefined) return { bytes };
          running.set(id, body);
          return { bytes, onEnd: () => running.delete(id) };
        },
      };
    },
    fails: ["idempotence.conflict"],
    cites: /PF-6/,
  },
  {
    name: "computes a retry of a running request a second time (wire proxy renames it)",
    proxy: () => {
      const running = new Map<string, string>();
      let retries = 0;
      return {
        request(method, bytes) {
          if (method !== "prefill") return { bytes };
          const request = opal.device.v1.PrefillRequest.decode(bytes);
          const id = request.requestId;
          // The body without request_id and priority (prefill.md §3).
          const body = Buffer.from(
            opal.device.v1.PrefillRequest.encode({
              ...request,
              requestId: "",
              priority: 0,
            }).finish(),
          ).toString("hex");
          if (running.get(id) === body) {
            request.requestId = `${id}.retry-${++retries}`;
            return { bytes: Buffer.from(opal.device.v1.PrefillRequest.encode(request).finish()) };
          }
          if (running.has(id)) return { bytes };
          running.set(id, body);
          return { bytes, onEnd: () => running.delete(id) };
        },
      };
    },
    fails: ["idempotence.supersede-running"],
    cites: /PF-7/,
  },
  {
    name: "keeps one request table for all tenants",
    mutation: (mock) => {
      const running = new Map<string, string>();
      return overrideDriver(mock, {
        prefill: async function* (r, o) {
          const body = bodyKey(r);
          if ((running.get(r.requestId) ?? body) !== body) {
            throw new OpalError(Code.ALREADY_EXISTS, "request_id is in use", {
              reason: Reason.REQUEST_ID_CONFLICT,
            });
          }
          running.set(r.requestId, body);
          try {
            yield* mock.prefill(r, o);
          } finally {
            if (running.get(r.requestId) === body) running.delete(r.requestId);
          }
        },
      });
    },
    fails: ["tenants.request-ids-scoped"],
    cites: /PF-4/,
  },
  {
    name: "keeps computing a cancelled prefill, holding its slot for 3 s",
    mutation: (mock) => holdCancelledPrefills(mock, 3_000),
    fails: ["deadlines.cancel-frees-slots"],
    cites: /PF-30/,
  },
  {
    name: "resumes FetchKv at the start of the part, ignoring offset_bytes",
    mutation: (mock) =>
      overrideDriver(mock, {
        fetchKv: (r, o) =>
          mock.fetchKv(
            r.resumeFrom ? { ...r, resumeFrom: { ...r.resumeFrom, offsetBytes: 0 } } : r,
            o,
          ),
      }),
    fails: ["retention.resume"],
    cites: /PF-13/,
  },
  {
    name: "reports the re-sent bytes, not the whole cache, as kv_total_bytes of a resumed FetchKv",
    mutation: (mock) =>
      overrideDriver(mock, {
        fetchKv: async function* (r, o) {
          let sent = 0;
          for await (const e of mock.fetchKv(r, o)) {
            if (e.type === "chunk") sent += e.chunk.data.byteLength;
            yield e.type === "completed" && r.resumeFrom
              ? ({ ...e, kvTotalBytes: sent } as FetchEvent)
              : e;
          }
        },
      }),
    fails: ["retention.resume"],
    cites: /RT-12/,
  },
  {
    name: "answers ReleaseKv released = true without releasing",
    mutation: (mock) => overrideDriver(mock, { releaseKv: async () => ({ released: true }) }),
    fails: ["retention.release"],
    cites: /RT-17/,
  },
  {
    name: "looks handles up without the tenant",
    mutation: (mock) => {
      const owners = new Map<string, string | undefined>();
      const owner = (handle: string, tenant?: string) =>
        owners.has(handle) ? owners.get(handle) : tenant;
      return overrideDriver(mock, {
        prefill: (r, o) =>
          mapEvents(mock.prefill(r, o), (e) => {
            if (e.type === "accepted") owners.set(e.kvHandle, o?.tenant);
            return e;
          }),
        fetchKv: (r, o) => mock.fetchKv(r, { ...o, tenant: owner(r.kvHandle, o?.tenant) }),
        releaseKv: (h, o) => mock.releaseKv(h, { ...o, tenant: owner(h, o?.tenant) }),
      });
    },
    fails: ["tenants.handles-isolated"],
    cites: /RT-9/,
  },
  {
    name: "retains every cache, even with retention_seconds 0",
    mutation: (mock) =>
      mapPrefill(
        mock,
        (events, r) =>
          mapEvents(events, (e) =>
            r.retentionSeconds
              ? e
              : e.type === "accepted"
                ? { ...e, leaseExpiryUnixMs: 0 }
                : e.type === "completed"
                  ? { ...e, stats: { ...e.stats, leaseExpiryUnixMs: 0 } }
                  : e,
          ),
        (r) => (r.retentionSeconds ? r : { ...r, retentionSeconds: 60 }),
      ),
    fails: ["retention.unretained-handle"],
    cites: /RT-6/,
  },
  {
    name: "reports the requested lease but keeps the cache for its maximum",
    mutation: (mock) =>
      mapPrefill(
        mock,
        (events, r) =>
          mapEvents(events, (e) =>
            r.retentionSeconds && e.type === "accepted"
              ? { ...e, leaseExpiryUnixMs: Date.now() + r.retentionSeconds * 1000 }
              : e,
          ),
        (r) => (r.retentionSeconds ? { ...r, retentionSeconds: 600 } : r),
      ),
    fails: ["retention.lease-expiry"],
    cites: /RT-5/,
  },
];
