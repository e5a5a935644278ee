"""Rule scaling_fits: Eq. 2 (with and without K_F) and Eq. 4 per domain, per model and pooled over
models (fits.csv); Eq. 2 pooled over domains, the cross-domain claim (fits_cross_domain.csv/.md)."""

from pathlib import Path

import pandas as pd

from intrinsic.analysis import (
    cross_domain_markdown, cross_domain_table, exclude_unfitted_runs, fits_table,
)
from intrinsic.io import atomic_write
from intrinsic.logs import logged
from intrinsic.tables import reference_slice, write_table


def per_model(fit, runs: pd.DataFrame, groups: list[str], **options) -> pd.DataFrame:
    """``fit`` pooled over models (model = all) and per model, model first after ``groups``."""
    table = pd.concat([fit(runs, groups, **options).assign(model="all"),
                       fit(runs, groups + ["model"], **options)], ignore_index=True)
    return table[groups + ["model"] + [c for c in table.columns if c not in groups + ["model"]]]


def log_problems(log, table: pd.DataFrame, keys: list[str]) -> None:
    """A warning per failed fit, and per fit without cluster-robust SEs."""
    for _, row in table.drop_duplicates(keys).iterrows():
        where = " ".join(str(row[k]) for k in keys)
        if row["error"]:
            log.warning("%s failed: %s", where, row["error"])
        elif row["cluster_note"]:
            log.warning("%s: %s", where, row["cluster_note"])


with logged(snakemake.log[0], "scaling_fits") as log:
    out, params = snakemake.output, snakemake.params
    # The clean, standard-trained grid: the study axes at their reference values.
    runs = reference_slice(pd.read_csv(snakemake.input[0]), snakemake.params.reference)
    exclude = bool(params.exclude_unfitted)
    if exclude:
        log.info("leaving out %d of %d runs that did not fit their training set "
                 "(analysis.exclude_unfitted)", exclude_unfitted_runs(runs)[1], len(runs))
    else:
        log.info("fitting all %d runs, fitted or not (analysis.exclude_unfitted: false)", len(runs))
    options = {"exclude_unfitted": exclude, "errors": "note"}

    blanks = {"error": "", "cluster_note": ""}
    fits = per_model(fits_table, runs, ["domain"], **options).fillna(blanks)
    write_table(fits, out.fits, log, sources=runs)
    log_problems(log, fits, ["domain", "model", "law"])

    cross = per_model(cross_domain_table, runs, [], exclude_domains=params.cross_domain_exclude,
                      **options).fillna(blanks)
    write_table(cross, out.cross_domain, log, sources=runs)
    summary = cross_domain_markdown(cross, ["model"])
    with atomic_write(Path(out.cross_domain_markdown), "w") as handle:
        handle.write(summary)
    log_problems(log, cross, ["model", "law"])
    log.info("%d fit rows (%d failed fits); cross-domain summary:\n%s", len(fits),
             fits.drop_duplicates(["domain", "model", "law"])["error"].ne("").sum(), summary)
