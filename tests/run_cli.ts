/**
 * Runs a command of cli/ in a child process, as a user would (`deno run -A cli/<script> ...args`),
 * for the tests that check what the commands print and exit with.
 * @module
 */

/** What a command printed (stdout then stderr) and its exit code. */
export interface CliResult {
  /** The exit code. */
  code: number;
  /** stdout followed by stderr. */
  out: string;
}

/** Runs `cli/<script>` with `args` and waits for it to exit. */
export async function runCli(script: string, args: readonly string[]): Promise<CliResult> {
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL(`../cli/${script}`, import.meta.url).pathname, ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: r.code, out: dec.decode(r.stdout) + dec.decode(r.stderr) };
}
