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

  it("leaves other messages to protobufjs", () => {
    expect(encodeChunkResponse({ accepted: { kvHandle: "h" } } as never)).toBeUndefined();
    expect(
      encodeChunkResponse({ chunk: { dataRef: { offsetBytes: 1, lengthBytes: 2 } } }),
    ).toBeUndefined();
  });
});
