"""Rule grid_tables: runs.csv, attacks.csv and epochs.csv (+ Parquet), joined with the dataset
properties."""

import pandas as pd

from intrinsic.logs import logged
from intrinsic.tables import grid_tables, write_csv, write_parquet

with logged(snakemake.log[0], "grid_tables") as log:  # noqa: F821 (injected by Snakemake)
    out = snakemake.output  # noqa: F821
    runs, attacks, epochs = grid_tables(
        snakemake.input.runs, pd.read_csv(snakemake.input.properties),  # noqa: F821
        snakemake.params.axis_types,  # noqa: F821
    )
    for name, table in (("runs", runs), ("attacks", attacks), ("epochs", epochs)):
        write_csv(table, out[name])
        write_parquet(table, out[f"{name}_parquet"])
    log.info("%d runs (%d fitted), %d attack rows, %d epoch rows", len(runs), int(runs["fitted"].sum()),
             len(attacks), len(epochs))
