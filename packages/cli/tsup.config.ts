import { withExecutables } from "../../tsup.config.base";

export default withExecutables({ opal: "bin/opal.ts" });
