import type { PrefillDriver } from "@opal/driver";

/** What the driver contract suite runs against. */
export interface ContractSubject {
  /** The driver under test, calling as tenant A. */
  readonly driver: PrefillDriver;
  /** The same device seen by another tenant (B); tenant-isolation tests are skipped without it. */
  readonly otherTenant?: PrefillDriver;
  /** A loaded model with vocabulary >= 64 and context >= 64 tokens. */
  readonly modelId: string;
  /** Prefills currently holding device resources, to check cancellation frees them. */
  activePrefills?(): number;
  /** Stops everything the subject started. */
  close(): Promise<void>;
}
