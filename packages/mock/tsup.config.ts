import { withExecutables } from "../../tsup.config.base";

export default withExecutables({ "opal-mock": "bin/opal-mock.ts" });
