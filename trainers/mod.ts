/**
 * Training: run configs (`defineRun`: the model's slots plus data and stages), the two-stage trainer
 * (`train`), atomic checkpoints, metrics and curves, the learning-rate schedule, loss scaling, the
 * memory plan (`planRun`) and evaluation of a trained model (`evaluate`).
 *
 * ```ts ignore
 * import { applyRunOverrides, train } from "./mod.ts";
 * const cfg = applyRunOverrides(runFile, ["train.stages[0].lr=2e-4"]);
 * const result = await train(engine, cfg, { runDir: "runs/my_run" });
 * ```
 * @module
 */

export * from "./config.ts";
export * from "./trainer.ts";
export * from "./step.ts";
export * from "./step_log.ts";
export * from "./stage_data.ts";
export * from "./evaluate.ts";
export * from "./checkpoint.ts";
export * from "./metrics.ts";
export * from "./progress.ts";
export * from "./svg.ts";
export * from "./schedule.ts";
export * from "./loss_scaler.ts";
export * from "./plan.ts";
export * from "./preflight.ts";
export * from "./ablation.ts";
export * from "./image_reliance.ts";
export * from "./run_file.ts";
export * from "./run_model.ts";
