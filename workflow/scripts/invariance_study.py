"""Rule invariance_study (App. B.1): the invariance records of every dataset, resolution and
channel count as one table, and the figure of d_data and K_F against the resolution."""

from intrinsic.appendix import figure_invariance, read_invariance_records
from intrinsic.logs import logged
from intrinsic.tables import write_table

with logged(snakemake.log[0], "invariance_study") as log:
    out = snakemake.output
    table = read_invariance_records(snakemake.input)
    write_table(table, out.table, log)
    figure_invariance(table, out.figure, out.figure_pdf)
    log.info("%d rows:\n%s", len(table), table[["dataset", "resolution", "channels", "d_mle", "d_twonn",
                                                "k_f_255"]].to_string())
