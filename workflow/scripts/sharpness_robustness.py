"""Rule sharpness_robustness: Table 1 (Pearson r of loss penalty vs K_F) and Figure 3."""

from pathlib import Path

import pandas as pd

from intrinsic.analysis import sharpness_correlations, sharpness_markdown, sharpness_points
from intrinsic.figures import figure_sharpness_robustness
from intrinsic.io import atomic_write
from intrinsic.logs import logged
from intrinsic.tables import reference_slice, write_table

KEYS = ["model", "attack", "eps_255"]
INTRO = ("Pearson r between the attack's test {what} penalty and label sharpness K_F across datasets{where}; "
         "each dataset's penalty and K_F are first averaged over training-set sizes N and seeds.")

with logged(snakemake.log[0], "sharpness_robustness") as log:
    out, params = snakemake.output, snakemake.params
    # The clean, standard-trained grid: the study axes at their reference values.
    attacks = reference_slice(pd.read_csv(snakemake.input[0]), snakemake.params.reference)
    tables = {  # output name -> (table, markdown intro)
        "table": (sharpness_correlations(attacks, KEYS), INTRO.format(what="loss", where="")),
        "by_domain": (sharpness_correlations(attacks, KEYS + ["domain"]),
                      INTRO.format(what="loss", where=" within each domain")),
        "accuracy": (sharpness_correlations(attacks, KEYS, y="accuracy_penalty"),
                     INTRO.format(what="accuracy", where="")),
    }
    for name, (table, intro) in tables.items():
        write_table(table, out[name], log, sources=attacks)
        with atomic_write(Path(out[f"{name}_markdown"]), "w") as handle:
            handle.write(sharpness_markdown(table, intro))
        log.info("%s:\n%s", name, table.to_string())
    write_table(sharpness_points(attacks, KEYS), out.points, log, sources=attacks)
    figures = {  # output name -> the figure's options
        "fig3": dict(eps_255=params.eps_255),
        "fig3_all_eps": dict(eps_255=None),
        "fig3_accuracy": dict(eps_255=params.eps_255, y="accuracy_penalty"),
    }
    for name, options in figures.items():
        panels = figure_sharpness_robustness(attacks, out[name], out[f"{name}_pdf"], attack=params.attack, **options)
        if panels.attrs["eps_note"]:
            log.warning("%s: %s", name, panels.attrs["eps_note"])
