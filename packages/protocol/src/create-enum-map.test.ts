import { OpalError } from "@opal/core";
import { describe, expect, it } from "vitest";
import { dtypeEnum, partEnum, samplingModeEnum } from "./gen/enums";
import { opal } from "./gen/pb.js";

describe("the generated enum maps", () => {
  it("map every value of the proto enum, prefix stripped and lower-cased, both ways", () => {
    const wire = opal.device.v1.KvDtype;
    expect(dtypeEnum.toWire("fp8_e4m3fn")).toBe(wire.KV_DTYPE_FP8_E4M3FN);
    for (const [name, number] of Object.entries(wire) as [string, number][]) {
      if (number === 0) continue;
      expect(dtypeEnum.toWire(dtypeEnum.fromWire(number, "dtype"))).toBe(number);
      expect(name.toLowerCase()).toBe(`kv_dtype_${dtypeEnum.fromWire(number, "dtype")}`);
    }
  });

  it('decode without judging: UNSPECIFIED is "", an unknown number `Name(n)`', () => {
    expect(dtypeEnum.decode(0)).toBe("");
    expect(dtypeEnum.decode(undefined)).toBe("");
    expect(dtypeEnum.decode(99)).toBe("KvDtype(99)");
    expect(samplingModeEnum.decode(9)).toBe("SamplingMode(9)");
    expect(samplingModeEnum.decode(2)).toBe("seeded");
  });

  it("fromWire judges: INVALID_FIELD for UNSPECIFIED, the enum's own reason for an unknown value", () => {
    const unspecified = catchError(() => dtypeEnum.fromWire(0, "descriptor.dtype"));
    expect([unspecified.reason, unspecified.fieldViolations[0]?.field]).toEqual([
      "INVALID_FIELD",
      "descriptor.dtype",
    ]);
    expect(catchError(() => dtypeEnum.fromWire(99, "dtype")).reason).toBe("UNSUPPORTED_DTYPE");
    expect(catchError(() => partEnum.fromWire(99, "chunk.part")).reason).toBe("INVALID_FIELD");
  });
});

function catchError(run: () => unknown): OpalError {
  try {
    run();
  } catch (error) {
    if (error instanceof OpalError) return error;
    throw error;
  }
  throw new Error("expected an OpalError");
}
