import type { ServiceContext } from "@opal/protocol";

/** What one device-service call runs with: the adapter's context plus the caller's tenant. */
export interface DeviceCallContext extends ServiceContext {
  /** The caller's tenant, set by the authentication interceptor before any handler runs. */
  readonly tenant: string;
}
