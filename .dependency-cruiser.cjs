// Architecture rules: each package imports only the packages its layer allows (tools/architecture.mjs),
// gRPC packages only behind @opal/protocol and the server host's listener,
// production code never imports test code, and there are no import cycles. Tests (*.test.ts,
// test/, bench/) may import any package, including the private `testing` kit.
const { readdirSync } = require("node:fs");

const testPaths = "(\\.test\\.ts$|/test/|/bench/)";

module.exports = (async () => {
  const { ALLOWED_DEPENDENCIES } = await import("./tools/architecture.mjs");
  const packages = readdirSync(`${__dirname}/packages`);
  const forbidden = [
    {
      name: "no-circular",
      severity: "error",
      comment: "Import cycles make layers meaningless.",
      from: {},
      to: { circular: true },
    },
    {
      name: "no-test-imports-in-src",
      severity: "error",
      comment: "Production code never imports tests or the testing kit.",
      from: { path: "^packages/(?!testing/)[^/]+/src/", pathNot: testPaths },
      to: { path: ["^packages/testing/", testPaths] },
    },
    {
      name: "grpc-behind-protocol",
      severity: "error",
      comment:
        "gRPC is used through @opal/protocol's client and service adapters; only protocol and the server host's listener import grpc packages (the test kit rebuilds reflected services for tests).",
      from: {
        path: "^packages/[^/]+/src/",
        pathNot: [
          testPaths,
          "^packages/protocol/src/",
          "^packages/server/src/listen-device-services\\.ts$",
          "^packages/testing/",
        ],
      },
      to: { path: "node_modules/(@grpc/|grpc-health-check/)" },
    },
    {
      name: "no-deep-grpc-imports",
      severity: "error",
      comment: "grpc-js internals change without notice: import its public entry only.",
      from: {},
      to: {
        path: "node_modules/@grpc/grpc-js/build/src/(?!index\\.js$)",
        dependencyTypes: ["npm"],
      },
    },
  ];
  for (const name of packages) {
    const allowed = ALLOWED_DEPENDENCIES[name];
    if (!allowed) throw new Error(`package ${name} is missing from tools/architecture.mjs`);
    const others = packages.filter((other) => other !== name && !allowed.includes(other));
    if (others.length === 0) continue;
    forbidden.push({
      name: `layer-${name}`,
      severity: "error",
      comment: `${name} may import only: ${allowed.join(", ") || "nothing"}`,
      from: { path: `^packages/${name}/src/`, pathNot: testPaths },
      to: { path: `^packages/(${others.join("|")})/` },
    });
  }
  return {
    forbidden,
    options: {
      doNotFollow: { path: "node_modules" },
      exclude: { path: ["/dist/", "/gen/(grpc-)?pb\\.js$"] },
      tsConfig: { fileName: "tsconfig.base.json" },
      tsPreCompilationDeps: true,
      enhancedResolveOptions: {
        conditionNames: ["source", "import", "require", "node", "default"],
        exportsFields: ["exports"],
        extensions: [".ts", ".js", ".d.ts"],
      },
    },
  };
})();
