"""Rule prepare_dataset: decode one dataset (embedded or real files) and write its uint8 cache."""

from pathlib import Path

from intrinsic.cache import write_cache
from intrinsic.logs import logged
from intrinsic.sources import drawn_pair_classes, load_source

with logged(snakemake.log[0], "prepare_dataset") as log:  # noqa: F821 (injected by Snakemake)
    spec = snakemake.params.spec  # noqa: F821
    name = snakemake.wildcards.dataset  # noqa: F821
    size, channels = snakemake.params.size, snakemake.params.channels  # noqa: F821
    log.info("preparing %s from %s", name, spec["source"])
    # Relative source paths are relative to the workflow's folder (two levels above this script).
    workflow_dir = Path(snakemake.scriptdir).resolve().parents[1]  # noqa: F821
    source = spec["source"]
    drawn = snakemake.params.drawn_pairs  # noqa: F821
    if drawn is not None:
        include = drawn_pair_classes(name, source, drawn["pairs"], drawn["class_pairs"], base_dir=workflow_dir)
        log.info("read_classes: drawn_pairs: reading the %d class folders of the first %d class pairs",
                 len(include), drawn["pairs"])
        source = {**source, "include_classes": include}
    raw = load_source(name, source, threads=snakemake.threads, log=log, size=size,  # noqa: F821
                      channels=channels, base_dir=workflow_dir)
    meta = write_cache(snakemake.output[0], raw, size=size, channels=channels,  # noqa: F821
                       domain=spec["domain"])
    log.info("cached %d images of shape %s, classes %s", meta["n_images"], meta["shape"], meta["class_counts"])
