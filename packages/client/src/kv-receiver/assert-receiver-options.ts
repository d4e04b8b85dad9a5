import { MAX_TIMER_MS } from "@opal/core";
import { assertIntegerOption, MAX_INT32 } from "../options/assert-option";
import { invalidOption } from "../options/invalid-option";
import type { KvReceiverOptions } from "./kv-receiver-options";

/**
 * Checks {@link KvReceiverOptions}: INVALID_ARGUMENT INVALID_FIELD naming the first bad field,
 * what it expects and what it got; `undefined` fields take their defaults.
 */
export function assertReceiverOptions(options: KvReceiverOptions<unknown>): void {
  if (typeof options?.createSink !== "function")
    throw invalidOption("createSink", "a function", options?.createSink);
  if (options.host !== undefined && (typeof options.host !== "string" || options.host === ""))
    throw invalidOption("host", "a non-empty host name or address", options.host);
  if (options.port !== undefined) assertIntegerOption("port", options.port, 0, 65_535);
  const tokens: unknown = options.tokens;
  if (tokens !== undefined) {
    if (!Array.isArray(tokens)) throw invalidOption("tokens", "an array of strings", tokens);
    tokens.forEach((token, i) => {
      if (typeof token !== "string" || token === "")
        throw invalidOption(`tokens[${i}]`, "a non-empty string", token);
    });
  }
  const integers = [
    ["maxConcurrentTransfers", 1, undefined],
    ["maxTransfersPerSender", 1, undefined],
    ["maxBufferedBytes", 1, undefined],
    ["maxBufferedBytesPerSender", 1, undefined],
    ["maxRememberedTransfers", 1, undefined],
    ["idleTimeoutMs", 0, MAX_TIMER_MS],
    ["maxMessageBytes", 1, MAX_INT32],
  ] as const;
  for (const [name, min, max] of integers) {
    const value = options[name];
    if (value !== undefined) assertIntegerOption(name, value, min, max);
  }
}
