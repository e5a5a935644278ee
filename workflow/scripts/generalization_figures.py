"""Rule generalization_figures: Figures 2 and 4 (loss and accuracy versions) and Figure 5."""

import pandas as pd

from intrinsic.figures import figure_generalization, figure_repr_vs_data
from intrinsic.logs import logged
from intrinsic.tables import reference_slice, write_table

GENERALIZATION = {  # figure -> (x, y, log y); Fig. 4 with d_repr by TwoNN, App. E.1 by MLE
    "fig2_generalization_loss": ("d_mle", "test_loss", True),
    "fig2_generalization_accuracy": ("d_mle", "test_accuracy", False),
    "fig4_repr_generalization_loss": ("d_repr_twonn", "test_loss", True),
    "fig4_repr_generalization_accuracy": ("d_repr_twonn", "test_accuracy", False),
    "fig4_repr_generalization_loss_mle": ("d_repr_mle", "test_loss", True),
    "fig4_repr_generalization_accuracy_mle": ("d_repr_mle", "test_accuracy", False),
}
REPR_VS_DATA = {"fig5_repr_vs_data": "mle", "fig5_repr_vs_data_twonn": "twonn"}  # figure -> estimator

with logged(snakemake.log[0], "generalization_figures") as log:
    out, params = snakemake.output, snakemake.params
    table = pd.read_csv(snakemake.input[0])
    # The clean, standard-trained grid: the study axes at their reference values; Figs. 2 and 4
    # keep every value of the axis they facet on (analysis.facet), one panel per value.
    runs = reference_slice(table, params.reference)
    faceted = reference_slice(table, {k: v for k, v in params.reference.items() if k != params.facet})
    summaries, guides = [], []
    for name, (x, y, log_y) in GENERALIZATION.items():
        summary = figure_generalization(faceted, out[name], out[f"{name}_pdf"], x=x, y=y, log_y=log_y,
                                        facet=params.facet)
        summaries.append(summary.assign(figure=name))
        guides.append(summary.attrs["guides"].assign(figure=name, x=x, y=y, log_y=log_y))
    for name, estimator in REPR_VS_DATA.items():
        summary, fraction = figure_repr_vs_data(runs, out[name], out[f"{name}_pdf"], estimator=estimator)
        summaries.append(summary.assign(figure=name))
        log.info("%s: fraction of (model, dataset, N) with d_repr <= d_data: %.3f", name, fraction)
    write_table(pd.concat(summaries, ignore_index=True), out.summary, log, sources=faceted)
    write_table(pd.concat(guides, ignore_index=True), out.guides, log, sources=faceted)
