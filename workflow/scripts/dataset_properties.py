"""Rule dataset_properties: d_data (MLE, TwoNN) and the data rank of one training split at one
background-noise level, as a JSON record."""

import torch

from intrinsic.cache import load_cache
from intrinsic.io import write_json
from intrinsic.logs import logged
from intrinsic.properties import split_properties
from intrinsic.splits import load_split

with logged(snakemake.log[0], "dataset_properties") as log:
    torch.set_num_threads(snakemake.threads)
    cache = load_cache(snakemake.input.cache)
    record = split_properties(
        cache,
        load_split(snakemake.input.split, cache),
        seed=int(snakemake.wildcards.seed),
        noise=snakemake.params.background["noise"],
        background_threshold=snakemake.params.background["threshold"] or 0,
        rank_energy=snakemake.params.rank_energy,
        **snakemake.params.options,
    )
    write_json(snakemake.output[0], record)
    log.info("%s", record)
