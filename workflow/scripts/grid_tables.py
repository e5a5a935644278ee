"""Rule grid_tables: runs.csv, attacks.csv and epochs.csv (+ Parquet), joined with the dataset
properties."""

import pandas as pd

from intrinsic.logs import logged
from intrinsic.tables import grid_tables, write_parquet, write_table

with logged(snakemake.log[0], "grid_tables") as log:
    out = snakemake.output
    runs, attacks, epochs = grid_tables(snakemake.input.runs, pd.read_csv(snakemake.input.properties))
    for name, table in (("runs", runs), ("attacks", attacks), ("epochs", epochs)):
        written = write_table(table, out[name], log)
        write_parquet(written, out[f"{name}_parquet"])
    log.info("%d runs (%d fitted), %d attack rows, %d epoch rows", len(runs), int(runs["fitted"].sum()),
             len(attacks), len(epochs))
