import { withExecutables } from "../../tsup.config.base";

export default withExecutables({ "opal-conformance": "bin/opal-conformance.ts" });
