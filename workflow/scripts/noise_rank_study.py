"""Rule noise_rank_study: data rank and d_data vs learned rank and d_repr over background-noise
levels (Zhang et al. 2025), per dataset and model."""

from pathlib import Path

import pandas as pd

from intrinsic.io import atomic_write
from intrinsic.logs import logged
from intrinsic.studies import figure_noise_rank, noise_rank_claim, noise_rank_markdown, noise_rank_table
from intrinsic.tables import write_csv

with logged(snakemake.log[0], "noise_rank_study") as log:  # noqa: F821 (injected by Snakemake)
    out = snakemake.output  # noqa: F821
    runs = pd.read_csv(snakemake.input[0])  # noqa: F821
    table = noise_rank_table(runs)
    claim = noise_rank_claim(table)
    write_csv(table, out.table)
    write_csv(claim, out.claim)
    with atomic_write(Path(out.markdown), "w") as handle:
        handle.write(noise_rank_markdown(table, claim))
    figure_noise_rank(runs, out.figure, out.figure_pdf)
    log.info("claim per (dataset, model):\n%s", claim.to_string())
