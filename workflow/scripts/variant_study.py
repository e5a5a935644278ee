"""Rule variant_study: Fan & Yezzi's noise class and exclusion of illusive samples against
standard training: test accuracy, over-fitting and adversarial accuracy."""

from pathlib import Path

import pandas as pd

from intrinsic.io import atomic_write
from intrinsic.logs import logged
from intrinsic.studies import figure_overfitting, figure_variants, variant_markdown, variant_table
from intrinsic.tables import write_table

with logged(snakemake.log[0], "variant_study") as log:
    out, tables = snakemake.output, snakemake.input
    runs, attacks, epochs = (pd.read_csv(path) for path in (tables.runs, tables.attacks, tables.epochs))
    table = variant_table(runs, attacks)
    write_table(table, out.table, log, sources=runs)
    with atomic_write(Path(out.markdown), "w") as handle:
        handle.write(variant_markdown(table))
    figure_variants(runs, attacks, out.figure, out.figure_pdf)
    figure_overfitting(epochs, out.overfitting, out.overfitting_pdf)
    log.info("variants:\n%s", table.to_string())
