import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { encodeChunkResponse } from "./encode-chunk-response";
import { opal } from "./gen/pb.js";

const v1 = opal.device.v1;

describe("encodeChunkResponse", () => {
  it("produces bytes protobufjs decodes to the same chunk, for any field values", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 2 ** 32 - 1 }),
        fc.integer({ min: 0, max: 6 }),
        fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
        fc.uint8Array({ maxLength: 300 }),
        fc.integer({ min: 0, max: 2 ** 32 - 1 }),
        (layer, part, offsetBytes, data, crc32c) => {
          const message = { chunk: { layer, part, offsetBytes, data, crc32c } };
          const fast = encodeChunkResponse(message)!;
          expect(Buffer.from(fast)).toEqual(
            Buffer.from(v1.PrefillResponse.encode(message).finish()),
          );
          const back = v1.FetchKvResponse.decode(fast).chunk!;
          expect([
            back.layer,
            back.part,
            back.offsetBytes,
            Buffer.from(back.data as Uint8Array),
            back.crc32c,
          ]).toEqual([layer, part, offsetBytes, Buffer.from(data), crc32c]);
        },
      ),
    );
  });

  it("pads chunks of 64 KiB or more so that data start 8-byte aligned in the gRPC frame (PF-48)", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 2 ** 32 - 1 }),
        fc.integer({ min: 0, max: 6 }),
        fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
        fc.integer({ min: 64 * 1024, max: 2 * 1024 * 1024 }),
        fc.integer({ min: 0, max: 2 ** 32 - 1 }),
        (layer, part, offsetBytes, length, crc32c) => {
          const data = new Uint8Array(length).fill(0xa5);
          const fast = Buffer.from(
            encodeChunkResponse({ chunk: { layer, part, offsetBytes, data, crc32c } })!,
          );
          // As a receiver sees it: the 5-byte gRPC prefix, then the message.
          const frame = Buffer.concat([Buffer.alloc(5), fast]);
          const back = v1.PrefillResponse.decode(frame.subarray(5)).chunk!;
          const received = back.data as Buffer;
          expect(received.byteOffset - frame.byteOffset).toSatisfy((at: number) => at % 8 === 0);
          expect([back.layer, back.part, back.offsetBytes, back.crc32c]).toEqual([
            layer,
            part,
            offsetBytes,
            crc32c,
          ]);
          expect(received.equals(data)).toBe(true);
        },
      ),
      { numRuns: 50 },
    );
  });

  it("leaves other messages to protobufjs", () => {
    expect(encodeChunkResponse({ accepted: { kvHandle: "h" } } as never)).toBeUndefined();
    expect(
      encodeChunkResponse({ chunk: { dataRef: { offsetBytes: 1, lengthBytes: 2 } } }),
    ).toBeUndefined();
  });
});
