"""Rule sharpness_robustness: Table 1 (Pearson r of loss penalty vs K_F) and Figure 3."""

from pathlib import Path

import pandas as pd

from intrinsic.analysis import sharpness_correlations, to_markdown_table
from intrinsic.figures import figure_sharpness_robustness
from intrinsic.io import atomic_write
from intrinsic.logs import logged
from intrinsic.tables import write_csv

with logged(snakemake.log[0], "sharpness_robustness") as log:  # noqa: F821 (injected by Snakemake)
    out = snakemake.output  # noqa: F821
    attacks = pd.read_csv(snakemake.input[0])  # noqa: F821
    table = sharpness_correlations(attacks, by=["model", "attack", "eps_255"])
    write_csv(table, out.table)
    wide = table.pivot(index=["attack", "model"], columns="eps_255", values="r")
    wide.columns = [f"eps = {eps}/255" for eps in wide.columns]
    with atomic_write(Path(out.markdown), "w") as handle:
        handle.write("Pearson r between the attack's test-loss penalty and label sharpness K_F "
                     "across datasets, averaged over training-set sizes.\n\n")
        handle.write(to_markdown_table(wide.reset_index(), floatfmt=".2f"))
    figure_sharpness_robustness(attacks, out.png, out.pdf, attack="fgsm")
    log.info("Table 1 (Pearson r, averaged over N):\n%s", wide.to_string())
