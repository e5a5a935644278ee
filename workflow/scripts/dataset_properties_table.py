"""Rule dataset_properties_table: the per-split d_data records joined with their class pair's
K_F (dataset_properties.csv), and one row per (dataset, class pair) (label_sharpness.csv)."""

from intrinsic.logs import logged
from intrinsic.tables import property_tables, write_table

with logged(snakemake.log[0], "dataset_properties_table") as log:
    splits, sharpness = property_tables(snakemake.input.splits, snakemake.input.sharpness)
    write_table(splits, snakemake.output.splits, log)
    write_table(sharpness, snakemake.output.sharpness, log)
    log.info("%d splits, %d class pairs, %d datasets; %d zero-distance pairs left out of K_F",
             len(splits), len(sharpness), splits["dataset"].nunique(),
             int(sharpness["kf_zero_distance_pairs"].sum()))
