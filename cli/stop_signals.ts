/**
 * Stopping a training process on a signal without losing its work. The first SIGINT (Ctrl-C) or SIGTERM
 * (what Slurm, Kubernetes and `mpirun` send before they kill) aborts {@linkcode StopSignals.signal}: the
 * trainer finishes its step, writes a checkpoint and returns, and the process exits 130 after SIGINT, 143
 * after SIGTERM.
 *
 * The burst rule: a signal less than {@linkcode BURST_SECONDS} after the first is part of the same burst
 * and changes nothing. Ctrl-C under `deno task` reaches the process twice within milliseconds (the
 * terminal signals the whole process group and the task runner forwards it), and a scheduler may signal
 * every process of a job. A signal {@linkcode BURST_SECONDS} or more after the first quits at once,
 * without saving (checkpoints are written to a temporary folder and renamed, so the last complete one
 * stays good). After SIGTERM the sender's grace period ends in SIGKILL, so once `termTimeout` seconds
 * have passed without the checkpoint the process quits by itself, saying why, rather than be cut off
 * without a word.
 *
 * ```ts ignore
 * const stops = new StopSignals({ note: "resume with --resume runs/x" }).listen();
 * await train(e, cfg, { runDir, signal: stops.signal });
 * stops.close();
 * if (stops.exitCode !== null) Deno.exit(stops.exitCode);
 * ```
 * @module
 */

/** The signals that stop a run. */
export type StopSignalName = "SIGINT" | "SIGTERM";

/** The exit code after each stop signal: 128 + its number, as a shell reports a process it killed. */
export const STOP_EXIT_CODES: Readonly<Record<StopSignalName, number>> = { SIGINT: 130, SIGTERM: 143 };

/** Seconds after the first stop signal during which further signals count as the same burst. */
export const BURST_SECONDS = 2;

/**
 * Seconds after SIGTERM before the process quits without its checkpoint: under the 30 s that
 * Kubernetes (`terminationGracePeriodSeconds`) and Slurm (`KillWait`) wait before SIGKILL, so the log
 * says why the run ended.
 */
export const DEFAULT_TERM_TIMEOUT_SECONDS = 25;

/** What {@linkcode StopSignals.receive} did with a signal. */
export type SignalOutcome = "stop" | "same burst" | "quit";

/** Options of {@linkcode StopSignals}. */
export interface StopSignalsOptions {
  /** Seconds after SIGTERM before quitting without saving; 0: wait (default {@linkcode DEFAULT_TERM_TIMEOUT_SECONDS}). */
  termTimeout?: number;
  /** Appended to the messages: what to do next, e.g. `resume with --resume runs/x`. */
  note?: string;
  /** Where messages go (default: stdout). */
  print?: (line: string) => void;
  /** The clock in milliseconds (default `performance.now`). */
  now?: () => number;
  /** Ends the process (default `Deno.exit`). */
  exit?: (code: number) => void;
}

/** The stop signals of a training process; see the module doc for the rule. */
export class StopSignals {
  readonly #abort = new AbortController();
  readonly #termTimeout: number;
  readonly #note: string;
  readonly #print: (line: string) => void;
  readonly #now: () => number;
  readonly #exit: (code: number) => void;
  #first: StopSignalName | null = null;
  #firstAt = 0;
  #timer: ReturnType<typeof setTimeout> | null = null;
  #listening = false;
  readonly #onInt = () => void this.receive("SIGINT");
  readonly #onTerm = () => void this.receive("SIGTERM");

  /** Stop signals; nothing is listened to before {@linkcode StopSignals.listen}. */
  constructor(opts: StopSignalsOptions = {}) {
    const t = opts.termTimeout ?? DEFAULT_TERM_TIMEOUT_SECONDS;
    if (!(t >= 0)) throw new Error(`StopSignals: termTimeout must be a number of seconds >= 0, got ${t}`);
    this.#termTimeout = t;
    this.#note = opts.note ? `; ${opts.note}` : "";
    this.#print = opts.print ?? ((l) => console.log(l));
    this.#now = opts.now ?? (() => performance.now());
    this.#exit = opts.exit ?? ((code) => Deno.exit(code));
  }

  /** Aborted on the first stop signal: the trainer then finishes its step, saves and returns. */
  get signal(): AbortSignal {
    return this.#abort.signal;
  }

  /** The first stop signal received, or null. */
  get received(): StopSignalName | null {
    return this.#first;
  }

  /** The code to exit with: 130 after SIGINT, 143 after SIGTERM, null when none came. */
  get exitCode(): number | null {
    return this.#first ? STOP_EXIT_CODES[this.#first] : null;
  }

  /** Listens to SIGINT and SIGTERM (their default action, to end the process at once, is then off). */
  listen(): this {
    if (!this.#listening) {
      Deno.addSignalListener("SIGINT", this.#onInt);
      Deno.addSignalListener("SIGTERM", this.#onTerm);
      this.#listening = true;
    }
    return this;
  }

  /** Stops listening and cancels the SIGTERM timeout. */
  close(): void {
    if (this.#listening) {
      Deno.removeSignalListener("SIGINT", this.#onInt);
      Deno.removeSignalListener("SIGTERM", this.#onTerm);
      this.#listening = false;
    }
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
  }

  /**
   * Handles one signal by the burst rule: the first stops the run after its step ("stop"); one within
   * {@linkcode BURST_SECONDS} of the first is ignored ("same burst"); a later one quits now ("quit").
   */
  receive(sig: StopSignalName): SignalOutcome {
    const now = this.#now();
    if (this.#first === null) {
      this.#first = sig;
      this.#firstAt = now;
      this.#print(`\n${stopMessage(sig, this.#termTimeout)}${this.#note}`);
      if (sig === "SIGTERM" && this.#termTimeout > 0) {
        const timer = setTimeout(() => {
          this.#print(
            `\nno checkpoint ${this.#termTimeout} s after SIGTERM: quitting without saving (--term-timeout ` +
              `sets the wait)${this.#note}`,
          );
          this.#exit(STOP_EXIT_CODES.SIGTERM);
        }, this.#termTimeout * 1000);
        Deno.unrefTimer(timer);
        this.#timer = timer;
      }
      this.#abort.abort();
      return "stop";
    }
    if (now - this.#firstAt < BURST_SECONDS * 1000) return "same burst";
    this.#print(`\n${sig} again: quitting without saving${this.#note}`);
    this.#exit(STOP_EXIT_CODES[this.#first]);
    return "quit";
  }
}

/** What the first signal prints. */
function stopMessage(sig: StopSignalName, termTimeout: number): string {
  if (sig === "SIGINT") {
    return `stopping after this step and saving; press Ctrl-C again to quit without saving (presses within ` +
      `${BURST_SECONDS} s of the first count as one)`;
  }
  const wait = termTimeout > 0 ? `after ${termTimeout} s or ` : "";
  return `SIGTERM: stopping after this step and saving; quitting without saving ${wait}on a signal ` +
    `${BURST_SECONDS} s or more after this one`;
}
