"""Rule prepare_dataset: decode one dataset (embedded or real files) and write its uint8 cache."""

import os
from pathlib import Path

from intrinsic.cache import write_cache
from intrinsic.logs import logged
from intrinsic.sources import drawn_pair_classes, load_source

with logged(snakemake.log[0], "prepare_dataset") as log:
    spec = snakemake.params.spec
    name = snakemake.wildcards.dataset
    size, channels = snakemake.params.size, snakemake.params.channels
    log.info("preparing %s from %s", name, spec["source"])
    # Relative source paths are relative to the workflow's folder (workflow/rules/files.smk: the
    # checkout, or a module's files exported from git, where this script's own folder is a URL).
    workflow_dir = Path(os.environ["INTRINSIC_WORKFLOW_DIR"])
    source = spec["source"]
    drawn = snakemake.params.drawn_pairs
    if drawn is not None:
        include = drawn_pair_classes(name, source, drawn["pairs"], drawn["class_pairs"], base_dir=workflow_dir)
        log.info("read_classes: drawn_pairs: reading the %d class folders of the first %d class pairs",
                 len(include), drawn["pairs"])
        source = {**source, "include_classes": include}
    raw = load_source(name, source, threads=snakemake.threads, log=log, size=size,
                      channels=channels, base_dir=workflow_dir)
    meta = write_cache(snakemake.output[0], raw, size=size, channels=channels,
                       domain=spec["domain"])
    log.info("cached %d images of shape %s, classes %s", meta["n_images"], meta["shape"], meta["class_counts"])
