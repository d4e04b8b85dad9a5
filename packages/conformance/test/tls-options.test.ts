import type { GrpcTlsOptions } from "@opal/protocol";
import { expectTypeOf, it } from "vitest";
import type { ConformanceOptions, WireClientOptions } from "../src/index";

it("the suite's TLS options are @opal/protocol's (PEM text or bytes)", () => {
  expectTypeOf<NonNullable<ConformanceOptions["tls"]>>().toEqualTypeOf<GrpcTlsOptions>();
  expectTypeOf<NonNullable<WireClientOptions["tls"]>>().toEqualTypeOf<GrpcTlsOptions>();
});
