import { runConformance, toVendorConfig } from "@opal/conformance";
import { Code, OpalError } from "@opal/core";
import { describe, expect, it } from "vitest";

describe("the vendor config names the checkpoint of the device's model", () => {
  it("accepts checkpoint as a folder path and says what a bad value should be", () => {
    expect(toVendorConfig({ model: "m", checkpoint: "/models/m" })).toEqual({
      model: "m",
      checkpoint: "/models/m",
    });
    expect(() => toVendorConfig({ checkpoint: 3 }, "vendor.yaml")).toThrow(
      /vendor\.yaml: checkpoint must be a string \(got 3\)/,
    );
    expect(() => toVendorConfig({ checkpoints: "x" })).toThrow(/unknown key "checkpoints"/);
  });

  it("needs the model the checkpoint belongs to, before contacting the device", async () => {
    const error = await runConformance({ target: "127.0.0.1:1", checkpoint: "/nowhere" }).catch(
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(OpalError);
    expect((error as OpalError).code).toBe(Code.INVALID_ARGUMENT);
    expect((error as OpalError).message).toMatch(/checkpoint needs the id of the model/);
  });

  it("rejects a checkpoint folder that does not exist, naming it", async () => {
    const error = await runConformance({
      target: "127.0.0.1:1",
      modelId: "m",
      checkpoint: "/nowhere/at-all",
    }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(OpalError);
    expect((error as OpalError).message).toMatch(/\/nowhere\/at-all/);
  });
});
