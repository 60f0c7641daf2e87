/**
 * The trainer's state in a checkpoint (`trainer_state.json`): where the run stands. A resumed run
 * checks it against its schema and against the run's stages before anything is restored, so a
 * damaged file, or one of another run, is refused with the file and the field named, instead of
 * resuming at a wrong place (or not at all) without a word.
 *
 * ```ts ignore
 * const ck = await loadCheckpoint(runDir, {
 *   expectParams: model.params(),
 *   checkState: (state, file, step) => checkTrainerState(state, file, cfg.train.stages, step),
 * });
 * ```
 * @module
 */

import { z } from "zod";
import { parseSchema } from "../schema/parse.ts";
import { type KernelChoices, kernelChoicesSchema } from "./kernel_choices.ts";

/** Where a run stands, as the trainer saves it (`position` of `trainer_state.json`). */
export interface TrainerPosition {
  /** Index of the current stage in `train.stages`. */
  stage: number;
  /** Optimizer steps done in the current stage. */
  stageStep: number;
  /** Optimizer steps done over the run. */
  step: number;
  /** Epoch within the stage. */
  epoch: number;
  /** Next row of the epoch's order. */
  row: number;
  /** The f16 loss scaler's state. */
  scaler: { scale: number; goodSteps: number };
}

/** The fields of `trainer_state.json` a resume relies on (the file may hold more). */
export interface TrainerState {
  /** Where the run stands. */
  position: TrainerPosition;
  /** The name of the current stage. */
  stage: string;
  /** The kernel choices the run measured (`--tune`), where it measured any. */
  kernelChoices?: KernelChoices;
}

const count = z.number().int().min(0);

/** The schema of `trainer_state.json`: fields it does not name are allowed and kept. */
const trainerStateSchema = z.looseObject({
  position: z.looseObject({
    stage: count,
    stageStep: count,
    step: count,
    epoch: count,
    row: count,
    scaler: z.looseObject({ scale: z.number().positive(), goodSteps: count }),
  }),
  stage: z.string(),
  kernelChoices: kernelChoicesSchema.optional(),
});

/** What {@linkcode checkTrainerState} needs to know of each stage of the run. */
export interface StageBounds {
  /** The stage's name. */
  readonly name: string;
  /** Its cap on optimizer steps (null or absent: its data and epochs decide). */
  readonly maxSteps?: number | null;
}

/**
 * Checks a checkpoint's trainer state (read from `file`) and returns it typed: the schema, then
 * against the run's `stages` (the stage index among them, the stage's name, its step count within
 * the stage's `maxSteps` and the run's steps) and against `step`, the step of the checkpoint's folder
 * name (null: not checked). Throws one error naming the file and each bad field.
 */
export function checkTrainerState(
  state: unknown,
  file: string,
  stages: readonly StageBounds[],
  step: number | null = null,
): TrainerState {
  let s: TrainerState;
  try {
    s = parseSchema(trainerStateSchema, state, "");
  } catch (err) {
    // parseSchema's lines start with the field's path from the root: ".position.step: ...", ": ..."
    const lines = (err as Error).message.split("\n");
    throw new Error(lines.map((l) => `${file}: ${l.replace(/^[.:] ?/, "")}`).join("\n"));
  }
  const p = s.position;
  const fix = "resume with the config that wrote the checkpoint";
  const problems: string[] = [];
  if (p.stage >= stages.length) {
    const n = stages.length;
    problems.push(
      `position.stage is ${p.stage}, but the run has ${n} stage(s) (indices 0 to ${n - 1}); ${fix}`,
    );
  } else {
    const stage = stages[p.stage];
    if (s.stage !== stage.name) {
      problems.push(
        `stage is "${s.stage}", but stage ${p.stage} of the run is "${stage.name}"; ${fix}`,
      );
    }
    if (stage.maxSteps != null && p.stageStep > stage.maxSteps) {
      problems.push(
        `position.stageStep is ${p.stageStep}, past the ${stage.maxSteps} steps (maxSteps) of stage ` +
          `"${stage.name}"; ${fix}`,
      );
    }
  }
  if (p.stageStep > p.step) {
    problems.push(`position.stageStep ${p.stageStep} exceeds position.step ${p.step}, the run's steps`);
  }
  if (step !== null && p.step !== step) {
    problems.push(`position.step is ${p.step}, but the checkpoint folder is of step ${step}`);
  }
  if (problems.length) throw new Error(problems.map((m) => `${file}: ${m}`).join("\n"));
  return s;
}
