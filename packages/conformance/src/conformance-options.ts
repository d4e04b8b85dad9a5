import type { GrpcTlsOptions } from "@opal/protocol";
import type { ConformanceResult } from "./conformance-report";
import type { ConformanceTest } from "./conformance-test";

/** Options of `runConformance`; only `target` is required. */
export interface ConformanceOptions {
  /** `host:port` of the device under test. */
  readonly target: string;
  /** Bearer token of tenant A; default none. */
  readonly token?: string;
  /** Bearer token of a second tenant, for the isolation tests; default none (they are skipped). */
  readonly tokenB?: string;
  /** TLS towards the device; default plaintext. */
  readonly tls?: GrpcTlsOptions;
  /** A model already on the device to prefill with, instead of uploading the conformance model. */
  readonly modelId?: string;
  /** `modelId` holds the conformance weights (seeded `opal-tiny`); default false. */
  readonly conformanceWeights?: boolean;
  /**
   * A local Hugging Face checkpoint folder (`config.json` and `model.safetensors`, or the shards of
   * `model.safetensors.index.json`) holding the weights of `modelId`, which is then required. The
   * suite loads it into the CPU reference and checks the device's K and V (and first token) against
   * it, for a device that cannot load the conformance model. Default none.
   */
  readonly checkpoint?: string;
  /** Run only tests whose id matches; default all. */
  readonly focus?: RegExp;
  /** Leave out tests whose id matches; default none. */
  readonly skip?: RegExp;
  /** Ids expected to fail (see docs/guides/conformance.md); default none. */
  readonly knownFailing?: readonly string[];
  /** Time limit of one test, in ms; default 60,000. */
  readonly testTimeoutMs?: number;
  /** Deadline of one prefill, in ms; default 30,000. */
  readonly prefillTimeoutMs?: number;
  /**
   * Interface the suite's push receiver binds to; the device must reach it there. Default
   * 127.0.0.1 (a device on the same machine); use an address of this machine for a remote device.
   */
  readonly receiverHost?: string;
  /** The tests; default every suite of `toConformanceTests()`. */
  readonly tests?: readonly ConformanceTest[];
  /** Called after each test, e.g. to print progress. */
  readonly onResult?: (result: ConformanceResult) => void;
}
