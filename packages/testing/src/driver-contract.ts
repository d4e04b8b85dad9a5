import { afterAll, beforeAll, describe, it } from "vitest";
import type { ContractSubject } from "./contract-subject";
import { DRIVER_CONTRACT_CASES } from "./driver-contract-cases";

/**
 * Registers the behavioural tests every `PrefillDriver` must pass — in process or over gRPC —
 * under `describe(name)`. `setup` runs once; its subject is closed after the tests.
 */
export function describeDriverContract(name: string, setup: () => Promise<ContractSubject>): void {
  describe(`driver contract: ${name}`, () => {
    let subject: ContractSubject;
    beforeAll(async () => {
      subject = await setup();
    }, 60_000);
    afterAll(async () => {
      await subject?.close();
    });
    for (const contractCase of DRIVER_CONTRACT_CASES) {
      it(contractCase.name, (ctx) => contractCase.run(subject, ctx));
    }
  });
}
