import { Code, OpalError } from "@opal/core";
import { createMockDevice } from "@opal/mock";
import { describe, expect, it } from "vitest";

async function fetchError(kvHandle: string): Promise<OpalError> {
  const mock = createMockDevice({ profile: "instant", limits: { maxRetentionSeconds: 0 } });
  try {
    for await (const _ of mock.fetchKv({ kvHandle })) throw new Error("streamed");
    throw new Error("ended without an error");
  } catch (error) {
    expect(error).toBeInstanceOf(OpalError);
    return error as OpalError;
  } finally {
    await mock.close();
  }
}

describe("FetchKv on a mock without retention answers as RT-11 orders it (as the server host does)", () => {
  it("checks the handle first: INVALID_ARGUMENT INVALID_FIELD naming kv_handle", async () => {
    const error = await fetchError("");
    expect([error.code, error.reason]).toEqual([Code.INVALID_ARGUMENT, "INVALID_FIELD"]);
    expect(error.fieldViolations[0]?.field).toBe("kv_handle");
  });

  it("then refuses: UNIMPLEMENTED UNSUPPORTED_FEATURE naming kv_handle, never NOT_FOUND", async () => {
    const error = await fetchError("a-handle-of-sixteen-or-more");
    expect([error.code, error.reason]).toEqual([Code.UNIMPLEMENTED, "UNSUPPORTED_FEATURE"]);
    expect(error.fieldViolations[0]?.field).toBe("kv_handle");
  });
});
