import { describe, expect, it } from "vitest";
import { formatBytes, formatRate } from "../src/format-bytes";

// What the progress bars of `opal prefill` and `opal load` show: bytes so far and the rate.
describe("formatBytes and formatRate", () => {
  it("print bytes in binary units with three significant figures", () => {
    expect(formatBytes(0)).toBe("0 B");
    expect(formatBytes(1023)).toBe("1023 B");
    expect(formatBytes(1536)).toBe("1.50 KiB");
    expect(formatBytes(12.34 * 1024 * 1024)).toBe("12.3 MiB");
    expect(formatBytes(2 * 1024 ** 3)).toBe("2.00 GiB");
  });

  it("print a rate per second, and - before any time has passed", () => {
    expect(formatRate(10 * 1024 * 1024, 2_000)).toBe("5.00 MiB/s");
    expect(formatRate(1024, 0)).toBe("-");
  });
});
