/**
 * The MPI launchers installed on this machine, for the tests that start several processes: the first
 * Open MPI (`mpirun`) and the first MPICH/Hydra (`mpiexec`) on PATH, told apart by what `--version`
 * prints.
 * @module
 */

/** An MPI launcher, and the arguments that start `n` processes with it. */
export interface Launcher {
  /** Whose launcher it is. */
  implementation: "openmpi" | "mpich";
  /** The command. */
  command: string;
  /** Its arguments for `n` processes on this machine (as root, Open MPI needs --allow-run-as-root). */
  args(n: number): string[];
}

/** The first Open MPI and the first MPICH (Hydra) launcher on PATH. */
export function findLaunchers(): Launcher[] {
  const found = new Map<string, Launcher>();
  for (const command of ["mpirun.openmpi", "mpiexec.mpich", "mpirun", "mpiexec", "mpiexec.hydra"]) {
    let text: string;
    try {
      const out = new Deno.Command(command, { args: ["--version"], stdout: "piped", stderr: "piped" })
        .outputSync();
      text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    } catch {
      continue; // not installed
    }
    if (/Open MPI|OpenRTE|Open RTE/i.test(text) && !found.has("openmpi")) {
      const asRoot = Deno.uid() === 0 ? ["--allow-run-as-root"] : [];
      found.set("openmpi", {
        implementation: "openmpi",
        command,
        args: (n) => ["-np", String(n), "--oversubscribe", ...asRoot],
      });
    } else if (/HYDRA/.test(text) && !found.has("mpich")) {
      found.set("mpich", { implementation: "mpich", command, args: (n) => ["-n", String(n)] });
    }
  }
  return [...found.values()];
}

/**
 * The command that starts `command` on `n` processes under `launcher`, with exactly the environment `env`
 * (so a test decides which variables the ranks see), output piped, ended after `timeoutMs`.
 */
export function launchCommand(
  launcher: Launcher,
  n: number,
  command: string[],
  env: Record<string, string>,
  opts: { cwd?: string; timeoutMs?: number } = {},
): Deno.Command {
  return new Deno.Command(launcher.command, {
    args: [...launcher.args(n), ...command],
    cwd: opts.cwd,
    env,
    clearEnv: true,
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(opts.timeoutMs ?? 120_000),
  });
}
