"""Rule figure_dataset_properties: Figure 1 of the paper and its summary table."""

import pandas as pd

from intrinsic.figures import figure_dataset_properties
from intrinsic.logs import logged
from intrinsic.tables import write_csv

with logged(snakemake.log[0], "figure_dataset_properties") as log:  # noqa: F821 (injected by Snakemake)
    table = pd.read_csv(snakemake.input[0])  # noqa: F821
    summary = figure_dataset_properties(table, snakemake.output.png, snakemake.output.pdf)  # noqa: F821
    write_csv(summary, snakemake.output.summary)  # noqa: F821
    log.info("plotted %d datasets", table["dataset"].nunique())
