import { Code, OpalError, Reason } from "@opal/core";
import type { ModelConfig } from "./model-config";

/**
 * Checks `tokens` to run after `pastTokens` cached ones. Throws INVALID_ARGUMENT for an empty
 * prompt (`PROMPT_EMPTY`), a token that is not an id below `vocabSize` (`TOKEN_OUT_OF_RANGE`), or
 * a context beyond `maxPositionEmbeddings` (`PROMPT_TOO_LONG`).
 */
export function assertModelTokens(
  config: ModelConfig,
  tokens: ArrayLike<number>,
  pastTokens: number,
): void {
  if (tokens.length === 0) {
    throw new OpalError(Code.INVALID_ARGUMENT, "prompt has 0 tokens (expected >= 1)", {
      reason: Reason.PROMPT_EMPTY,
    });
  }
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i]!;
    if (!Number.isInteger(t) || t < 0 || t >= config.vocabSize) {
      throw new OpalError(
        Code.INVALID_ARGUMENT,
        `token ${t} at index ${i} out of range (vocabulary has ${config.vocabSize} tokens)`,
        { reason: "TOKEN_OUT_OF_RANGE" },
      );
    }
  }
  if (pastTokens + tokens.length > config.maxPositionEmbeddings) {
    throw new OpalError(
      Code.INVALID_ARGUMENT,
      `context of ${pastTokens + tokens.length} tokens exceeds maxPositionEmbeddings ${config.maxPositionEmbeddings}`,
      { reason: Reason.PROMPT_TOO_LONG },
    );
  }
}
