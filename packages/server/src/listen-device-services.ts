import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { loadFileDescriptorSetFromBuffer, loadSync } from "@grpc/proto-loader";
import { ReflectionService } from "@grpc/reflection";
import {
  createServiceImplementation,
  FILE_DESCRIPTOR_SET_BASE64,
  type GrpcListener,
  type GrpcListenerTls,
  type GrpcService,
  type GrpcTransportSettings,
  HealthV1Definition,
  listenGrpc,
} from "@opal/protocol";
import { protoPath as healthProtoPath } from "grpc-health-check";
import type { Logger } from "pino";
import type { DeviceHealth } from "./device-health";

/** The health-checked name of the device service. */
export const DEVICE_SERVICE_NAME = "opal.device.v1.DeviceService";

/** Services a device server serves and lists in reflection. */
const SERVED_SERVICES = [
  DEVICE_SERVICE_NAME,
  "grpc.health.v1.Health",
  "grpc.reflection.v1.ServerReflection",
  "grpc.reflection.v1alpha.ServerReflection",
] as const;

/** Options of {@link listenDeviceServices}. */
export interface DeviceListenerOptions {
  /** `host:port` or `unix:path`. */
  readonly address: string;
  readonly tls: GrpcListenerTls | undefined;
  readonly transport: GrpcTransportSettings;
  /** `opal.device.v1.DeviceService`, with its interceptors. */
  readonly device: GrpcService;
  readonly health: DeviceHealth;
  readonly logger: Logger;
}

/**
 * The device server's listener (the server host's one use of the grpc packages beside
 * `@opal/protocol`): serves the device service, `grpc.health.v1.Health` and server reflection (v1
 * and v1alpha), and keeps repeated `authorization` headers so the authenticator refuses them.
 */
export function listenDeviceServices(options: DeviceListenerOptions): Promise<GrpcListener> {
  return listenGrpc({
    address: options.address,
    ...(options.tls ? { tls: options.tls } : {}),
    transport: options.transport,
    services: [
      options.device,
      createServiceImplementation(HealthV1Definition, options.health.handlers),
      ...reflectionServices(options.logger),
    ],
    repeatedHeaders: ["authorization"],
  });
}

/**
 * Server reflection listing exactly the services this server serves (GEN-9): the protocol's
 * descriptor set also holds KvReceiverService, which a device does not serve.
 */
function reflectionServices(logger: Logger): GrpcService[] {
  const reflectionProtos = reflectionProtoPaths();
  if (reflectionProtos.length === 0) {
    logger.warn("reflection protos not found: reflection will not list itself");
  }
  const services: GrpcService[] = [];
  new ReflectionService(
    {
      ...loadFileDescriptorSetFromBuffer(Buffer.from(FILE_DESCRIPTOR_SET_BASE64, "base64")),
      ...loadSync(healthProtoPath),
      ...(reflectionProtos.length > 0 ? loadSync(reflectionProtos) : {}),
    },
    { services: [...SERVED_SERVICES] },
  ).addToServer({
    addService: (definition, implementation) => services.push({ definition, implementation }),
  });
  return services;
}

/** The reflection protos shipped with `@grpc/reflection`, or none when they cannot be found. */
function reflectionProtoPaths(): string[] {
  // ESM resolves through `import.meta.url`; the CommonJS build (where that is empty) has `require`.
  const resolvers = [() => createRequire(import.meta.url), () => require];
  for (const resolver of resolvers) {
    try {
      const root = join(
        dirname(resolver().resolve("@grpc/reflection/package.json")),
        "build",
        "proto",
      );
      const paths = ["v1", "v1alpha"]
        .map((version) => join(root, "grpc", "reflection", version, "reflection.proto"))
        .filter((path) => existsSync(path));
      if (paths.length > 0) return paths;
    } catch {
      // try the next way of resolving
    }
  }
  return [];
}
