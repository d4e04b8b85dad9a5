import { describe, expect, it } from "vitest";
import { createCallSignal, sleep, throwIfAborted } from "./call-options";
import { Code } from "./code";
import { OpalError } from "./opal-error";

describe("createCallSignal", () => {
  it("aborts with DEADLINE_EXCEEDED when the timeout passes", async () => {
    const call = createCallSignal({ timeoutMs: 5 });
    await expect(sleep(1_000, call.signal)).rejects.toMatchObject({ code: Code.DEADLINE_EXCEEDED });
    call.dispose();
  });

  it("aborts with CANCELLED when the caller aborts, keeping an OpalError reason", () => {
    const controller = new AbortController();
    const call = createCallSignal({ signal: controller.signal });
    expect(call.signal.aborted).toBe(false);
    controller.abort();
    expect(() => throwIfAborted(call.signal)).toThrow(/\[cancelled\]/);
    const reason = new OpalError(Code.UNAVAILABLE, "device lost");
    const second = new AbortController();
    second.abort(reason);
    expect(createCallSignal({ signal: second.signal }).signal.reason).toBe(reason);
  });

  it("rejects a negative timeout with INVALID_ARGUMENT", () => {
    expect(() => createCallSignal({ timeoutMs: -1 })).toThrow(/timeoutMs must be/);
  });

  it("does not fire after dispose", async () => {
    const call = createCallSignal({ timeoutMs: 5 });
    call.dispose();
    await sleep(20);
    expect(call.signal.aborted).toBe(false);
  });
});
