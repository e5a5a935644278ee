"""Rule figure_dataset_properties: Figure 1 of the paper and its summary table."""

import pandas as pd

from intrinsic.figures import figure_dataset_properties
from intrinsic.logs import logged
from intrinsic.tables import reference_slice, write_table

with logged(snakemake.log[0], "figure_dataset_properties") as log:
    # d_data of the clean images (the noise axis at its reference value)
    splits = reference_slice(pd.read_csv(snakemake.input.splits), snakemake.params.reference)
    sharpness = pd.read_csv(snakemake.input.sharpness)
    summary = figure_dataset_properties(splits, sharpness, snakemake.output.figure, snakemake.output.figure_pdf)
    write_table(summary, snakemake.output.summary, log, sources=[splits, sharpness])
    log.info("plotted %d datasets:\n%s", summary["dataset"].nunique(), summary.to_string())
