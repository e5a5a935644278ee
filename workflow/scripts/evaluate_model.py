"""Rule evaluate_model: test loss/accuracy, attacks, d_repr and ranks, and the Jacobian norms of
one run."""

import torch

from intrinsic.logs import logged
from intrinsic.runs import evaluate_run

with logged(snakemake.log[0], "evaluate_model") as log:  # noqa: F821 (injected by Snakemake)
    torch.set_num_threads(snakemake.threads)  # noqa: F821
    params, out = snakemake.params, snakemake.output  # noqa: F821
    options = params.evaluation
    record = evaluate_run(
        params.run, snakemake.input.cache, snakemake.input.split,  # noqa: F821
        snakemake.input.model, snakemake.input.training, out.record, out.jacobians,  # noqa: F821
        eps=params.eps, attacks=options["attacks"], pgd_steps=options["pgd_steps"],
        batch_size=options["batch_size"], knn_k=params.knn_k, rank_energy=params.rank_energy,
        representation_layer=options["representation_layer"], background=params.background,
        device=params.device,
    )
    log.info("%s", record["run"])
