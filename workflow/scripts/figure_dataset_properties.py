"""Rule figure_dataset_properties: Figure 1 of the paper and its summary table."""

import pandas as pd

from intrinsic.figures import figure_dataset_properties
from intrinsic.logs import logged
from intrinsic.tables import reference_slice, write_csv

with logged(snakemake.log[0], "figure_dataset_properties") as log:  # noqa: F821 (injected by Snakemake)
    # d_data of the clean images (the noise axis at its reference value)
    splits = reference_slice(pd.read_csv(snakemake.input.splits), snakemake.params.reference)  # noqa: F821
    sharpness = pd.read_csv(snakemake.input.sharpness)  # noqa: F821
    summary = figure_dataset_properties(splits, sharpness, snakemake.output.png, snakemake.output.pdf)  # noqa: F821
    write_csv(summary, snakemake.output.summary)  # noqa: F821
    log.info("plotted %d datasets:\n%s", summary["dataset"].nunique(), summary.to_string())
