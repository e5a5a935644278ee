"""Rule run_model: train one grid run until it fits its training set (or for a fixed number of
epochs, training.mode), resumably, then evaluate it in the same process."""

import sys

import torch

from intrinsic.logs import logged
from intrinsic.runs import run_model, train_settings
from intrinsic.training import Interrupted, stop_on_signals

with logged(snakemake.log[0], "run_model") as log:
    torch.set_num_threads(snakemake.threads)
    params, output = snakemake.params, snakemake.output
    keys, training = params.run, params.training
    config = train_settings(keys["model"], training, keys["seed"], training["device"])
    log.info("run %s: %s", keys, config)
    if params.evaluation.get("attacked_examples"):  # only the runs App. D.1's figure draws (common.smk)
        log.info("recording attacked examples: %s", params.evaluation["attacked_examples"])
    try:
        # SLURM's warning before the time limit (profiles/slurm: --signal) or a TERM: finish the
        # epoch, write its checkpoint, exit with an error; the retry resumes.
        with stop_on_signals():
            records = run_model(
                keys, snakemake.input.cache, snakemake.input.split, config,
                training_path=output.training, evaluation_path=output.record, jacobians_path=output.jacobians,
                model_path=output.get("model"), checkpoint_folder=params.checkpoints,
                keep_checkpoint=params.keep_checkpoint, checkpoint_every_s=params.checkpoint_every_s,
                evaluation=params.evaluation, variant=params.variant, background=params.background,
                log=log, progress=sys.stderr.isatty(),
            )
    except Interrupted as stopped:
        log.error("%s; exiting so that the retry resumes", stopped)
        sys.exit(75)  # EX_TEMPFAIL
    trained = records["training"]
    log.info("%s after %d epochs on %s (%.1f s); evaluated in %.1f s", "fitted" if trained["fitted"] else "NOT fitted",
             trained["epochs"], trained["device"], trained["train_seconds"],
             records["evaluation"]["run"]["eval_seconds"])
