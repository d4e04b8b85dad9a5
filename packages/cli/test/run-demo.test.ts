import { Code } from "@opal/core";
import { mockModelFlops, mockProfile, simulatedTimeUs } from "@opal/mock";
import { expectOpalError } from "@opal/testing";
import { describe, expect, it } from "vitest";
import { runDemo } from "../src/run-demo";

/** Listening TCP servers of this process (gRPC servers among them). */
const listeningServers = () =>
  process.getActiveResourcesInfo().filter((name) => name === "TCPServerWrap").length;

describe("runDemo", () => {
  it("projects the H100 time from the FLOPs, whatever profile the device runs", async () => {
    const instant = await runDemo({ model: "opal-tiny", profile: "instant", maxNewTokens: 2 });
    const h100 = mockProfile("h100");
    const expected = simulatedTimeUs(h100, mockModelFlops("llama-3-8b", instant.promptTokens));
    expect(instant.projection.deviceTimeUs).toBe(0);
    expect(instant.projection.h100TimeUs).toBeGreaterThan(0);
    expect(instant.projection.h100TimeUs).toBeCloseTo(expected, 6);
    expect(instant.projection.h100EnergyJoules).toBeCloseTo((700 * expected) / 1e6, 9);
    const nova = await runDemo({ model: "opal-tiny", profile: "iris-nova", maxNewTokens: 2 });
    expect(nova.projection.h100TimeUs).toBeCloseTo(expected, 6);
  });

  it("rejects tokens to generate that are not a whole number >= 1 or overflow the context, before starting anything", async () => {
    const before = listeningServers();
    await expectOpalError(runDemo({ model: "opal-tiny", maxNewTokens: 0 }), Code.INVALID_ARGUMENT);
    const fraction = await expectOpalError(
      runDemo({ model: "opal-tiny", maxNewTokens: 2.5 }),
      Code.INVALID_ARGUMENT,
    );
    expect(fraction.message).toBe(
      "[invalid_argument] maxNewTokens: expected a whole number >= 1, got 2.5",
    );
    const tooMany = await expectOpalError(
      runDemo({ model: "opal-tiny", prompt: "hello", maxNewTokens: 4093 }),
      Code.INVALID_ARGUMENT,
    );
    expect(tooMany.message).toBe(
      "[invalid_argument] maxNewTokens: expected at most 4091 (a 6-token prompt in opal-tiny's context of 4096 tokens), got 4093",
    );
    expect(listeningServers()).toBe(before);
  });

  it("closes the decode agent and the device when the device refuses the prompt", async () => {
    const before = listeningServers();
    await expectOpalError(
      runDemo({ model: "opal-tiny", prompt: "x".repeat(5_000), maxNewTokens: 2 }),
      Code.INVALID_ARGUMENT,
    );
    await expect.poll(listeningServers, { timeout: 2_000 }).toBe(before);
  });
});
