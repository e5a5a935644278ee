"""Rule evaluate_model: test loss/accuracy, attacks, d_repr and Jacobian norm of one run."""

import torch

from intrinsic.logs import logged
from intrinsic.runs import evaluate_run

with logged(snakemake.log[0], "evaluate_model") as log:  # noqa: F821 (injected by Snakemake)
    torch.set_num_threads(snakemake.threads)  # noqa: F821
    options = snakemake.params.evaluation  # noqa: F821
    record = evaluate_run(
        snakemake.params.run, snakemake.input.cache, snakemake.input.split,  # noqa: F821
        snakemake.input.model, snakemake.input.training, snakemake.output[0],  # noqa: F821
        eps_255=options["eps_255"], attacks=options["attacks"], pgd_steps=options["pgd_steps"],
        batch_size=options["batch_size"], knn_k=snakemake.params.knn_k,  # noqa: F821
        representation_layer=options["representation_layer"],
        device=snakemake.params.device,  # noqa: F821
    )
    log.info("%s", record["run"])
