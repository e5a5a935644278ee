"""Rule prepare_dataset: decode one dataset and write its uint8 cache."""

from pathlib import Path

from intrinsic.cache import write_cache
from intrinsic.embedded import generate
from intrinsic.logs import logged

with logged(snakemake.log[0], "prepare_dataset") as log:  # noqa: F821 (injected by Snakemake)
    spec = snakemake.params.spec  # noqa: F821
    options = {k: v for k, v in spec["source"].items() if k != "type"}
    name = snakemake.wildcards.dataset  # noqa: F821
    log.info("generating %s (%s) with %s", name, spec["source"]["type"], options)
    raw = generate(name, spec["source"]["type"], **options)
    meta = write_cache(
        Path(snakemake.output.meta).parent,  # noqa: F821
        raw,
        size=snakemake.params.size,  # noqa: F821
        channels=snakemake.params.channels,  # noqa: F821
        domain=spec["domain"],
    )
    log.info("cached %d images of shape %s, classes %s", meta["n_images"], meta["shape"], meta["class_counts"])
