"""Rule invariance_study (App. B.1): the invariance records of every dataset, resolution and
channel count as one table, and the figure of d_data and K_F against the resolution."""

from intrinsic.appendix import figure_invariance, read_invariance_records
from intrinsic.logs import logged
from intrinsic.tables import write_csv

with logged(snakemake.log[0], "invariance_study") as log:  # noqa: F821 (injected by Snakemake)
    out = snakemake.output  # noqa: F821
    table = read_invariance_records(snakemake.input)  # noqa: F821
    write_csv(table, out.table)
    figure_invariance(table, out.figure, out.figure_pdf)
    log.info("%d rows:\n%s", len(table), table[["dataset", "resolution", "channels", "d_mle", "d_twonn",
                                                "k_f_255"]].to_string())
