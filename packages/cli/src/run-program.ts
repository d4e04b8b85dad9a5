import { exitCodeOf, formatErrorReport, toErrorReport } from "@opal/core";
import type { Command } from "commander";
import { hintOf } from "./target-options";

/** Applies `configure` to `command` and every command below it (commander copies no settings to added commands). */
function eachCommand(command: Command, configure: (c: Command) => void): void {
  configure(command);
  for (const sub of command.commands) eachCommand(sub, configure);
}

/**
 * Runs `program` as the executable `name` with `argv`: marks required options "(required)" in
 * every command's help, and ends a failure the documented way
 * (`ExitCode` of `@opal/core`): usage errors exit 2, failures with a status code 64 + that code.
 * With `--json` on the command line a failure is printed to stdout as
 * `{ "error": { code, exitCode, reason, field, message, hint? } }` and nothing goes to stderr;
 * otherwise stderr gets `<name>: [code] message`, the reason, each invalid field and the hint.
 * Resolves when the command's action has; the process then ends when nothing keeps it alive (a
 * served mock device does).
 */
export async function runProgram(
  name: string,
  program: Command,
  argv = process.argv,
): Promise<void> {
  // `--json` as a flag (not `opal conformance --json <file>`); the command's parsed options decide
  // once its action is about to run, this guess only for errors in parsing the command line.
  const at = argv.indexOf("--json");
  let json = at >= 0 && (at === argv.length - 1 || argv[at + 1]!.startsWith("-"));
  let printed = false;
  program.hook("preAction", (_, action) => {
    json = action.opts().json === true;
  });
  eachCommand(program, (c) => {
    for (const option of c.options) {
      if (option.mandatory && !option.description.endsWith("(required)"))
        option.description = `${option.description} (required)`;
    }
    c.exitOverride();
    c.configureOutput({
      writeErr: (text: string) => {
        if (!json) process.stderr.write(text);
      },
      outputError: (text: string, write: (text: string) => void) => {
        printed = true;
        write(text);
      },
    });
  });
  try {
    await program.parseAsync(argv);
  } catch (error) {
    const exitCode = exitCodeOf(error);
    if (exitCode !== 0) {
      const hint = hintOf(error);
      if (json) {
        const report = { ...toErrorReport(error), ...(hint ? { hint } : {}) };
        process.stdout.write(`${JSON.stringify({ error: report }, null, 2)}\n`);
      } else if (!printed) {
        process.stderr.write(
          `${formatErrorReport(name, error)}${hint ? `\n  hint: ${hint}` : ""}\n`,
        );
      }
    }
    process.exit(exitCode);
  }
}
