import { defineConfig, type Options } from "tsup";
import base from "../../tsup.config.base";

// cborg (the CBOR of vLLM's *_cbor block hashes) ships ESM only: its exports have no "require"
// condition, so a CommonJS consumer could not load it. Both builds carry it inline.
export default defineConfig({ ...(base as Options), noExternal: ["cborg"] });
