"""Rule figure_dataset_properties: Figure 1 of the paper and its summary table."""

import pandas as pd

from intrinsic.figures import figure_dataset_properties
from intrinsic.logs import logged
from intrinsic.tables import write_csv

with logged(snakemake.log[0], "figure_dataset_properties") as log:  # noqa: F821 (injected by Snakemake)
    splits = pd.read_csv(snakemake.input.splits)  # noqa: F821
    sharpness = pd.read_csv(snakemake.input.sharpness)  # noqa: F821
    summary = figure_dataset_properties(splits, sharpness, snakemake.output.png, snakemake.output.pdf)  # noqa: F821
    write_csv(summary, snakemake.output.summary)  # noqa: F821
    log.info("plotted %d datasets:\n%s", summary["dataset"].nunique(), summary.to_string())
