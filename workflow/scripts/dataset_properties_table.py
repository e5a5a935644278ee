"""Rule dataset_properties_table: merge the per-split records into one tidy CSV."""

from intrinsic.logs import logged
from intrinsic.tables import PROPERTY_COLUMNS, merge_records, write_csv

with logged(snakemake.log[0], "dataset_properties_table") as log:  # noqa: F821 (injected by Snakemake)
    table = merge_records(snakemake.input, PROPERTY_COLUMNS)  # noqa: F821
    write_csv(table, snakemake.output[0])  # noqa: F821
    log.info("%d rows, %d datasets", len(table), table["dataset"].nunique())
