import type { DeviceCapabilities } from "@opal/driver";

/**
 * The capabilities a device server declares: the driver's, plus push when the host pushes for a
 * driver that does not (`hostPush`), and the data planes the host serves (inline, and shared
 * memory when `sharedMemory`; requests reach drivers without `data_plane`).
 */
export function withHostFeatures(
  capabilities: DeviceCapabilities,
  host: { readonly hostPush: boolean; readonly sharedMemory: boolean },
): DeviceCapabilities {
  const features = host.hostPush ? { ...capabilities.features, push: true } : capabilities.features;
  const dataPlanes: DeviceCapabilities["dataPlanes"] = host.sharedMemory
    ? ["inline", "shared_memory"]
    : ["inline"];
  return { ...capabilities, features, dataPlanes };
}
