import { describe, expect, it } from "vitest";
import { createCallRegistry } from "./call-registry";
import { Code } from "./code";
import { OpalError } from "./opal-error";

describe("createCallRegistry", () => {
  it("aborts every open call with the reason given, and forgets disposed calls", () => {
    const registry = createCallRegistry();
    const first = registry.open();
    const second = registry.open();
    second.dispose();
    expect(registry.size).toBe(1);
    const reason = new OpalError(Code.UNAVAILABLE, "closed");
    registry.abortAll(reason);
    expect(first.signal.reason).toBe(reason);
    expect(second.signal.aborted).toBe(false);
    first.dispose();
    expect(registry.size).toBe(0);
  });

  it("follows the caller's signal as CANCELLED and the deadline as DEADLINE_EXCEEDED", async () => {
    const registry = createCallRegistry();
    const caller = new AbortController();
    const cancelled = registry.open({ signal: caller.signal });
    caller.abort();
    expect((cancelled.signal.reason as OpalError).code).toBe(Code.CANCELLED);
    const timed = registry.open({ timeoutMs: 1 });
    await new Promise((resolve) => timed.signal.addEventListener("abort", resolve));
    expect((timed.signal.reason as OpalError).code).toBe(Code.DEADLINE_EXCEEDED);
    cancelled.dispose();
    timed.dispose();
  });

  it("opens an already aborted call for an aborted caller, and registers nothing for a bad timeout", () => {
    const registry = createCallRegistry();
    const call = registry.open({ signal: AbortSignal.abort() });
    expect(call.signal.aborted).toBe(true);
    call.dispose();
    expect(() => registry.open({ timeoutMs: -1 })).toThrow(/timeoutMs/);
    expect(registry.size).toBe(0);
  });
});
