import { defineConfig, type Options } from "tsup";
import base from "../../tsup.config.base";

// cborg (the CBOR of vLLM's *_cbor block hashes) ships ESM only: its exports have no "require"
// condition, so a CommonJS consumer could not load it. Both builds carry it inline.
// The sub-path exports (`@opal/kv/okv`, ...) are entries of their own. Splitting puts the code
// they share with the root in common chunks, for CommonJS too, so `@opal/kv` and
// `@opal/kv/okv` hand out the same functions and classes (`instanceof KvFormatError` holds
// whichever path loaded the code).
export default defineConfig({
  ...(base as Options),
  entry: {
    index: "src/index.ts",
    okv: "src/subpaths/okv.ts",
    safetensors: "src/subpaths/safetensors.ts",
    layouts: "src/subpaths/layouts.ts",
    hashing: "src/subpaths/hashing.ts",
  },
  splitting: true,
  noExternal: ["cborg"],
});
