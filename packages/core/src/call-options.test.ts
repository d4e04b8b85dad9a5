import { describe, expect, it, vi } from "vitest";
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

  it.each([-1, Number.NaN, Number.POSITIVE_INFINITY, "5" as unknown as number])(
    "rejects timeoutMs %s with INVALID_ARGUMENT INVALID_FIELD naming it, leaving the caller's signal alone",
    (timeoutMs) => {
      const caller = new AbortController();
      const listeners = vi.spyOn(caller.signal, "addEventListener");
      let error: unknown;
      try {
        createCallSignal({ timeoutMs, signal: caller.signal });
      } catch (caught) {
        error = caught;
      }
      expect(error).toBeInstanceOf(OpalError);
      expect((error as OpalError).code).toBe(Code.INVALID_ARGUMENT);
      expect((error as OpalError).reason).toBe("INVALID_FIELD");
      expect((error as OpalError).fieldViolations.map((v) => v.field)).toEqual(["timeoutMs"]);
      expect(listeners).not.toHaveBeenCalled();
    },
  );

  it("holds a deadline beyond Node's longest timer to that timer instead of firing at once", async () => {
    const call = createCallSignal({ timeoutMs: 30 * 24 * 3_600_000 });
    await sleep(20);
    expect(call.signal.aborted).toBe(false);
    call.dispose();
  });

  it("does not fire after dispose", async () => {
    const call = createCallSignal({ timeoutMs: 5 });
    call.dispose();
    await sleep(20);
    expect(call.signal.aborted).toBe(false);
  });
});
