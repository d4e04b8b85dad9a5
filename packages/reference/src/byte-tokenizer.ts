import { Code, OpalError } from "@opal/core";

/** Options of {@link ByteTokenizer.encode}. */
export interface EncodeTextOptions {
  /** Prepend the BOS token; default true. */
  readonly bos?: boolean;
}

/**
 * Byte-level tokenizer: a token per UTF-8 byte (ids 0-255), plus BOS (256) and EOS (257);
 * vocabulary of 258 ids, matching the presets.
 */
export interface ByteTokenizer {
  /** UTF-8 bytes of `text` as token ids, after BOS unless `options.bos` is false. */
  encode(text: string, options?: EncodeTextOptions): Uint32Array;
  /**
   * Text of `tokens`: bytes decoded as UTF-8 (invalid sequences become U+FFFD), BOS and EOS skipped.
   * Throws INVALID_ARGUMENT (reason `TOKEN_OUT_OF_RANGE`) for an id >= 258.
   */
  decode(tokens: ArrayLike<number>): string;
  readonly bosTokenId: number;
  readonly eosTokenId: number;
  readonly vocabSize: number;
}

/** Creates the {@link ByteTokenizer}. */
export function createByteTokenizer(): ByteTokenizer {
  const bosTokenId = 256;
  const eosTokenId = 257;
  const vocabSize = 258;
  const encoder = new TextEncoder();
  const decoder = new TextDecoder("utf-8");
  return {
    bosTokenId,
    eosTokenId,
    vocabSize,
    encode(text, options = {}) {
      const bytes = encoder.encode(text);
      const bos = options.bos ?? true;
      const out = new Uint32Array(bytes.length + (bos ? 1 : 0));
      if (bos) out[0] = bosTokenId;
      out.set(bytes, bos ? 1 : 0);
      return out;
    },
    decode(tokens) {
      const bytes: number[] = [];
      for (let i = 0; i < tokens.length; i++) {
        const t = tokens[i]!;
        if (!Number.isInteger(t) || t < 0 || t >= vocabSize) {
          throw new OpalError(
            Code.INVALID_ARGUMENT,
            `token ${t} out of range (vocabulary has ${vocabSize} tokens)`,
            { reason: "TOKEN_OUT_OF_RANGE" },
          );
        }
        if (t < 256) bytes.push(t);
      }
      return decoder.decode(Uint8Array.from(bytes));
    },
  };
}
