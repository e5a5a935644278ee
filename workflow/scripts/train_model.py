"""Rule train_model: train one grid run until it fits its training set, or for a fixed number
of epochs (training.mode); resumable."""

import sys

import torch

from intrinsic.logs import logged
from intrinsic.runs import train_run, train_settings

with logged(snakemake.log[0], "train_model") as log:  # noqa: F821 (injected by Snakemake)
    torch.set_num_threads(snakemake.threads)  # noqa: F821
    keys = snakemake.params.run  # noqa: F821
    training = snakemake.params.training  # noqa: F821
    config = train_settings(keys["model"], training, keys["seed"], training["device"])
    log.info("run %s: %s", keys, config)
    record = train_run(
        keys, snakemake.input.cache, snakemake.input.split, config,  # noqa: F821
        model_path=snakemake.output.model, record_path=snakemake.output.record,  # noqa: F821
        checkpoint_folder=snakemake.params.checkpoints,  # noqa: F821
        log=log, progress=sys.stderr.isatty(),
        variant=snakemake.params.variant, background=snakemake.params.background,  # noqa: F821
    )
    log.info("%s after %d epochs on %s (%.1f s)", "fitted" if record["fitted"] else "NOT fitted",
             record["epochs"], record["device"], record["train_seconds"])
