"""Rule task_ranking (App. C.3): the tasks (labelings) of one image set ranked by K_F and by
test loss, with Spearman's rho per group and model, as a table and a figure."""

import pandas as pd

from intrinsic.appendix import figure_task_ranking, task_ranking_table
from intrinsic.logs import logged
from intrinsic.tables import write_table

with logged(snakemake.log[0], "task_ranking") as log:
    inputs, out, params = snakemake.input, snakemake.output, snakemake.params
    # seeds: "0 1 2", or one seed that a CSV reader would take for a number; text either way.
    sharpness = pd.read_csv(inputs.sharpness, dtype={"seeds": str})
    runs, properties = pd.read_csv(inputs.runs), pd.read_csv(inputs.properties)
    table = task_ranking_table(runs, sharpness, properties, dict(params.groups), reference=dict(params.reference))
    write_table(table, out.table, log, sources=[runs, sharpness, properties])
    figure_task_ranking(table, out.figure, out.figure_pdf)
    log.info("%d rows:\n%s", len(table), table[["group", "dataset", "model", "k_f_255", "test_loss", "rank_k_f",
                                                "rank_test_loss", "spearman_rho"]].to_string())
