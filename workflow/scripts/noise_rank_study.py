"""Rule noise_rank_study: data rank and d_data vs learned rank and d_repr over background-noise
levels (Zhang et al. 2025), per dataset and model."""

from pathlib import Path

import pandas as pd

from intrinsic.io import atomic_write
from intrinsic.logs import logged
from intrinsic.studies import figure_noise_rank, noise_rank_claim, noise_rank_markdown, noise_rank_table
from intrinsic.tables import write_table

with logged(snakemake.log[0], "noise_rank_study") as log:
    out = snakemake.output
    runs = pd.read_csv(snakemake.input[0])
    table = noise_rank_table(runs)
    claim = noise_rank_claim(table)
    write_table(table, out.table, log, sources=runs)
    write_table(claim, out.claim, log, sources=runs)
    with atomic_write(Path(out.markdown), "w") as handle:
        handle.write(noise_rank_markdown(table, claim))
    figure_noise_rank(runs, out.figure, out.figure_pdf)
    log.info("claim per (dataset, model):\n%s", claim.to_string())
