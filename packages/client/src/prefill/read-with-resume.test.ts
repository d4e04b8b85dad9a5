import type { KvAssembler } from "@opal/kv";
import { describe, expect, it } from "vitest";
import type { PrefillRunState } from "./prefill-run-state";
import type { StreamProgress } from "./read-kv-stream";
import { resumePointOf } from "./read-with-resume";

const position = { layer: 2, offsetBytes: 4096 };

const runWith = (resume: boolean, retentionSeconds: number | undefined) =>
  ({ resume, request: { retentionSeconds } }) as unknown as PrefillRunState<unknown>;

const progressWith = (complete: boolean, patch: Partial<StreamProgress> = {}): StreamProgress => ({
  attemptStartedAt: 0,
  kvHandle: "kv-1",
  assembler: { complete } as KvAssembler,
  position,
  ...patch,
});

describe("resumePointOf", () => {
  it("resumes a retained, incomplete cache from the first byte not verified", () => {
    expect(resumePointOf(runWith(true, 30), progressWith(false))).toEqual({
      kvHandle: "kv-1",
      position,
    });
  });

  it("does not resume when resuming is off or the request retains nothing", () => {
    expect(resumePointOf(runWith(false, 30), progressWith(false))).toBeUndefined();
    expect(resumePointOf(runWith(true, 0), progressWith(false))).toBeUndefined();
    expect(resumePointOf(runWith(true, undefined), progressWith(false))).toBeUndefined();
  });

  it("retries whole a cache that is complete (it failed its final check) or never accepted", () => {
    expect(resumePointOf(runWith(true, 30), progressWith(true))).toBeUndefined();
    const notAccepted = progressWith(false, { kvHandle: undefined });
    expect(resumePointOf(runWith(true, 30), notAccepted)).toBeUndefined();
    const noChunks = progressWith(false, { assembler: undefined });
    expect(resumePointOf(runWith(true, 30), noChunks)).toBeUndefined();
  });
});
