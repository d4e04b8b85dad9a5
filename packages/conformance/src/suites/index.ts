import type { ConformanceTest } from "../conformance-test";
import { toDataPlaneSuite } from "./data-plane-suite";
import { toIdempotenceSuite } from "./idempotence-suite";
import { toIdentitySuite } from "./identity-suite";
import { toLoadSuite } from "./load-suite";
import { toModelsSuite } from "./models-suite";
import { toPrefillSuite } from "./prefill-suite";
import { toPrefixSuite } from "./prefix-suite";
import { toRetentionSuite } from "./retention-suite";
import { toStreamSuite } from "./stream-suite";
import { toTelemetryAndPushSuite } from "./telemetry-push-suite";
import { toTenantsSuite } from "./tenants-suite";
import { toValidationOrderSuite } from "./validation-order-suite";
import { toValidationSuite } from "./validation-suite";

/** Every test of the suite, in the order they run: identity first, load last. */
export function toConformanceTests(): ConformanceTest[] {
  return [
    ...toIdentitySuite(),
    ...toModelsSuite(),
    ...toValidationSuite(),
    ...toValidationOrderSuite(),
    ...toStreamSuite(),
    ...toDataPlaneSuite(),
    ...toPrefillSuite(),
    ...toPrefixSuite(),
    ...toIdempotenceSuite(),
    ...toRetentionSuite(),
    ...toTenantsSuite(),
    ...toTelemetryAndPushSuite(),
    ...toLoadSuite(),
  ];
}
