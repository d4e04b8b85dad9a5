import { describe, expect, it } from "vitest";
import { createByteTokenizer } from "./byte-tokenizer";

describe("createByteTokenizer", () => {
  const tokenizer = createByteTokenizer();

  it("encodes UTF-8 bytes after BOS and decodes them back, skipping BOS and EOS", () => {
    const tokens = tokenizer.encode("héllo ✓");
    expect(Array.from(tokens)).toEqual([256, 104, 195, 169, 108, 108, 111, 32, 226, 156, 147]);
    expect(tokenizer.decode([...tokens, tokenizer.eosTokenId])).toBe("héllo ✓");
    expect(Array.from(tokenizer.encode("ab", { bos: false }))).toEqual([97, 98]);
    expect(tokenizer.vocabSize).toBe(258);
  });

  it("rejects ids outside the vocabulary", () => {
    expect(() => tokenizer.decode([258])).toThrow(
      /token 258 out of range \(vocabulary has 258 tokens\)/,
    );
  });
});
