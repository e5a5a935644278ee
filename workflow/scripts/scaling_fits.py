"""Rule scaling_fits: Eq. 2 (with and without K_F) and Eq. 4 per domain, per model and pooled."""

import pandas as pd

from intrinsic.analysis import fits_table
from intrinsic.logs import logged
from intrinsic.tables import write_csv

with logged(snakemake.log[0], "scaling_fits") as log:  # noqa: F821 (injected by Snakemake)
    runs = pd.read_csv(snakemake.input[0])  # noqa: F821
    pooled = fits_table(runs, ["domain"], errors="note").assign(model="all")
    per_model = fits_table(runs, ["domain", "model"], errors="note")
    fits = pd.concat([pooled, per_model], ignore_index=True)
    fits = fits[["domain", "model"] + [c for c in fits.columns if c not in ("domain", "model")]]
    write_csv(fits, snakemake.output[0])  # noqa: F821
    failed = fits[fits["error"].fillna("") != ""]
    for row in failed.itertuples():
        log.warning("fit %s %s %s failed: %s", row.domain, row.model, row.law, row.error)
    log.info("%d fit rows, %d failed fits", len(fits), len(failed))
