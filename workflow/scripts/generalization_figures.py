"""Rule generalization_figures: Figures 2 and 4 (loss and accuracy versions) and Figure 5."""

import pandas as pd

from intrinsic.figures import figure_generalization, figure_repr_vs_data
from intrinsic.logs import logged
from intrinsic.tables import write_csv

with logged(snakemake.log[0], "generalization_figures") as log:  # noqa: F821 (injected by Snakemake)
    out = snakemake.output  # noqa: F821
    runs = pd.read_csv(snakemake.input[0])  # noqa: F821
    pdf = dict(zip(["fig2_loss", "fig2_accuracy", "fig4_loss", "fig4_accuracy", "fig5"], out.pdfs))
    summaries = []
    for name, x in (("fig2", "d_mle"), ("fig4", "d_repr_twonn")):
        for kind, y, log_y in (("loss", "test_loss", True), ("accuracy", "test_accuracy", False)):
            key = f"{name}_{kind}"
            summary = figure_generalization(runs, out[key], pdf[key], x=x, y=y, log_y=log_y)
            summaries.append(summary.assign(figure=key, x_column=x, y_column=y))
    summary, fraction = figure_repr_vs_data(runs, out.fig5, pdf["fig5"])
    summaries.append(summary.assign(figure="fig5"))
    write_csv(pd.concat(summaries, ignore_index=True), out.summary)
    log.info("fraction of (model, dataset, N) with d_repr <= d_data: %.3f", fraction)
