"""Rule grid_tables: runs.csv and attacks.csv (+ Parquet), joined with the dataset properties."""

import pandas as pd

from intrinsic.logs import logged
from intrinsic.tables import grid_tables, write_csv, write_parquet

with logged(snakemake.log[0], "grid_tables") as log:  # noqa: F821 (injected by Snakemake)
    out = snakemake.output  # noqa: F821
    runs, attacks = grid_tables(
        snakemake.input.runs, pd.read_csv(snakemake.input.properties),  # noqa: F821
        snakemake.params.run_keys,  # noqa: F821
    )
    write_csv(runs, out.runs)
    write_csv(attacks, out.attacks)
    write_parquet(runs, out.runs_parquet)
    write_parquet(attacks, out.attacks_parquet)
    log.info("%d runs (%d fitted), %d attack rows", len(runs), int(runs["fitted"].sum()), len(attacks))
