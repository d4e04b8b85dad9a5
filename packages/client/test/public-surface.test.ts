import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import { describe, expect, it } from "vitest";
import * as api from "../src/index";

// The SDK's promise (src/index.ts): no grpc-js type appears in its public surface, so integrators
// never depend on the transport library's types and the transport can change without a major.

const packagesDir = fileURLToPath(new URL("../../", import.meta.url));
const declarationFile = (pkg: string, file: string) => `${packagesDir}${pkg}/dist/${file}`;

/** The declaration file's text without comments: prose may name grpc-js, types may not. */
function readDeclarations(path: string): string {
  if (!existsSync(path)) {
    throw new Error(
      `${path} is missing: build first (\`npm run build\`; \`npm test\` and CI build before vitest)`,
    );
  }
  return readFileSync(path, "utf8")
    .replace(/\/\*[\s\S]*?\*\//g, "")
    .replace(/^\s*\/\/.*$/gm, "");
}

const GRPC_MENTION = /@grpc\/|grpc-js/;

/** Module specifiers the declarations import or re-export from. */
function importedModules(text: string): string[] {
  return [...text.matchAll(/\bfrom\s+['"]([^'"]+)['"]|\bimport\(\s*['"]([^'"]+)['"]\s*\)/g)].map(
    (m) => (m[1] ?? m[2])!,
  );
}

describe("public types of @opal/client expose no grpc-js type", () => {
  it.each(["index.d.ts", "index.d.cts"])("dist/%s neither imports nor names grpc-js", (file) => {
    const text = readDeclarations(declarationFile("client", file));
    // A sanity check that this is the SDK's declaration file, not an empty or stub build.
    expect(text).toMatch(/declare function createDeviceClient\(/);
    expect(text).toMatch(/declare function startPrefill</);
    expect(text.match(GRPC_MENTION)?.[0]).toBeUndefined();
    expect(importedModules(text).filter((m) => !m.startsWith("@opal/"))).toEqual([]);
  });

  it("nor do the @opal packages its declarations import (transitively)", () => {
    const seen = new Set<string>();
    const packages = new Set<string>();
    // A declaration file of a package's dist; `./x.js` is one of its chunks (sub-path builds
    // share declarations), `@opal/kv/okv` a sub-path entry.
    const visit = (pkg: string, file = "index.d.ts") => {
      if (seen.has(`${pkg}/${file}`)) return;
      seen.add(`${pkg}/${file}`);
      packages.add(pkg);
      const text = readDeclarations(declarationFile(pkg, file));
      expect({ pkg, file, grpc: text.match(GRPC_MENTION)?.[0] }).toEqual({
        pkg,
        file,
        grpc: undefined,
      });
      for (const m of importedModules(text)) {
        if (m.startsWith("./")) {
          visit(pkg, m.slice(2).replace(/\.js$/, ".d.ts"));
          continue;
        }
        expect({ pkg, imports: m }).toEqual({ pkg, imports: expect.stringMatching(/^@opal\//) });
        const [name, sub] = m.slice("@opal/".length).split("/");
        visit(name as string, sub ? `${sub}.d.ts` : "index.d.ts");
      }
    };
    visit("client");
    // The client's types rest on driver, kv and core (not on protocol, which uses grpc-js).
    expect([...packages]).toEqual(expect.arrayContaining(["client", "core", "driver", "kv"]));
  });
});

/** Every value grpc-js exports, and the prototypes of its classes. */
const grpcValues = new Set<unknown>(Object.values(grpc));
const grpcPrototypes = new Set<unknown>(
  (Object.values(grpc) as unknown[])
    .filter((v): v is { prototype: object } => typeof v === "function" && !!v.prototype)
    .map((v) => v.prototype),
);
for (const v of Object.values(grpc.credentials)) grpcValues.add(v);

/** Why `value` comes from grpc-js, or undefined when it does not. */
function grpcOrigin(value: unknown): string | undefined {
  if (value === null || (typeof value !== "object" && typeof value !== "function")) return;
  if (grpcValues.has(value)) return "is a grpc-js export";
  for (let p = Object.getPrototypeOf(value); p; p = Object.getPrototypeOf(p)) {
    if (grpcPrototypes.has(p)) return `is an instance of grpc-js's ${p.constructor?.name}`;
  }
  if (typeof value === "function" && value.prototype) {
    for (let p = Object.getPrototypeOf(value.prototype); p; p = Object.getPrototypeOf(p)) {
      if (grpcPrototypes.has(p)) return `extends grpc-js's ${p.constructor?.name}`;
    }
  }
  return undefined;
}

describe("runtime exports of @opal/client", () => {
  it("the origin check recognises grpc-js values (so the checks below can fail)", () => {
    expect(grpcOrigin(grpc.Metadata)).toBe("is a grpc-js export");
    expect(grpcOrigin(grpc.credentials)).toBe("is a grpc-js export");
    expect(grpcOrigin(new grpc.Metadata())).toBe("is an instance of grpc-js's Metadata");
    expect(grpcOrigin(class extends grpc.Client {})).toBe("extends grpc-js's Client");
    expect(grpcOrigin(grpc.credentials.createInsecure())).toMatch(/^is an instance of grpc-js's/);
    expect(grpcOrigin({})).toBeUndefined();
  });

  it("export no grpc-js value, class, instance or name", () => {
    const names = Object.keys(api);
    expect(names).toContain("createDeviceClient");
    expect(names.filter((n) => n in grpc)).toEqual([]);
    const offending: string[] = [];
    for (const [name, value] of Object.entries(api)) {
      const origin = grpcOrigin(value);
      if (origin) offending.push(`${name} ${origin}`);
      if (value && typeof value === "object") {
        for (const [key, inner] of Object.entries(value)) {
          const innerOrigin = grpcOrigin(inner);
          if (innerOrigin) offending.push(`${name}.${key} ${innerOrigin}`);
        }
      }
    }
    expect(offending).toEqual([]);
  });

  it("a device client's properties hold no grpc-js object", async () => {
    const client = api.createDeviceClient("127.0.0.1:1");
    try {
      const offending = Object.entries(client).flatMap(([key, value]) => {
        const origin = grpcOrigin(value);
        return origin ? [`${key} ${origin}`] : [];
      });
      expect(offending).toEqual([]);
      expect(Object.keys(client)).toEqual(expect.arrayContaining(["prefill", "getInfo", "target"]));
    } finally {
      await client.close();
    }
  });
});

describe("what integrators catch and compare", () => {
  it("@opal/client re-exports OpalError, Code and Reason of @opal/core", async () => {
    const core = await import("@opal/core");
    expect(api.OpalError).toBe(core.OpalError);
    expect(api.Code).toBe(core.Code);
    expect(api.Reason).toBe(core.Reason);
    const error = new api.OpalError(api.Code.NOT_FOUND, "x", {
      reason: api.Reason.KV_HANDLE_NOT_FOUND,
    });
    expect(api.isOpalError(error, api.Code.NOT_FOUND)).toBe(true);
  });
});
