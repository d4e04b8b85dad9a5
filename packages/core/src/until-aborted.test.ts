import { getEventListeners } from "node:events";
import { describe, expect, it } from "vitest";
import { Code } from "./code";
import { OpalError } from "./opal-error";
import { untilAborted } from "./until-aborted";

describe("untilAborted", () => {
  it("settles as the promise does while the signal stays quiet, and leaves no listener", async () => {
    const controller = new AbortController();
    await expect(untilAborted(Promise.resolve(7), controller.signal)).resolves.toBe(7);
    await expect(untilAborted(Promise.reject(new Error("no")), controller.signal)).rejects.toThrow(
      "no",
    );
    expect(getEventListeners(controller.signal, "abort")).toHaveLength(0);
  });

  it("rejects with the abort's OpalError as soon as the signal aborts, or at once if it has", async () => {
    const controller = new AbortController();
    const pending = untilAborted(new Promise(() => {}), controller.signal);
    const reason = new OpalError(Code.UNAVAILABLE, "gone");
    controller.abort(reason);
    await expect(pending).rejects.toBe(reason);
    await expect(untilAborted(Promise.resolve(1), AbortSignal.abort())).rejects.toMatchObject({
      code: Code.CANCELLED,
    });
  });
});
