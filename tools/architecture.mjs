// The package layers of docs/architecture.md: which workspace packages each package may import.
// `npm run lint:deps` (dependency-cruiser) and tools/check-package-deps.mjs enforce it.
export const ALLOWED_DEPENDENCIES = {
  core: [],
  kv: ["core"],
  protocol: ["core", "kv", "driver"],
  driver: ["core", "kv"],
  reference: ["core", "kv"],
  server: ["core", "kv", "protocol", "driver"],
  mock: ["core", "kv", "driver", "reference", "server"],
  client: ["core", "kv", "protocol", "driver"],
  conformance: ["core", "kv", "protocol", "client", "reference"],
  cli: ["core", "kv", "protocol", "driver", "reference", "server", "mock", "client", "conformance"],
  testing: ["core", "kv", "protocol", "driver", "reference", "server", "mock", "client"],
};
