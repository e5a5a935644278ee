"""Rule sensitivity_study: generalization gap vs the input-output Jacobian norm (Novak et al.
2018), per domain and model, with Pearson and Spearman correlations and their CIs."""

from pathlib import Path

import pandas as pd

from intrinsic.io import atomic_write
from intrinsic.logs import logged
from intrinsic.studies import (
    figure_jacobian_generalization, jacobian_generalization_markdown, jacobian_generalization_table,
)
from intrinsic.tables import write_table

with logged(snakemake.log[0], "sensitivity_study") as log:
    out = snakemake.output
    # Novak et al. correlate networks of one training protocol over many data conditions: every
    # standard-trained run, at every background-noise level of the grid.
    runs = pd.read_csv(snakemake.input[0])
    table = jacobian_generalization_table(runs, variant="standard", noise=None)
    write_table(table, out.table, log, sources=runs)
    with atomic_write(Path(out.markdown), "w") as handle:
        handle.write(jacobian_generalization_markdown(table))
    figure_jacobian_generalization(runs, out.figure, out.figure_pdf, variant="standard", noise=None)
    log.info("%d runs:\n%s", len(runs), table.to_string())
