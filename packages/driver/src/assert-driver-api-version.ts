import { Code, OpalError } from "@opal/core";
import { DRIVER_API_VERSION, type PrefillDriver } from "./prefill-driver";

/**
 * Throws FAILED_PRECONDITION unless `driver.driverApiVersion` equals {@link DRIVER_API_VERSION}:
 * hosts call it before serving a driver, so a driver built against another interface version fails
 * at start-up, not mid-request.
 */
export function assertDriverApiVersion(driver: Pick<PrefillDriver, "driverApiVersion">): void {
  if (driver.driverApiVersion !== DRIVER_API_VERSION) {
    throw new OpalError(
      Code.FAILED_PRECONDITION,
      `driver implements driver API ${driver.driverApiVersion}, this host expects ${DRIVER_API_VERSION}`,
    );
  }
}
