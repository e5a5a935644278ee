"""Rule dataset_properties: d_data (MLE, TwoNN) and the data rank of one training split at one
background-noise level, as a JSON record."""

import torch

from intrinsic.cache import load_cache
from intrinsic.io import write_json
from intrinsic.logs import logged
from intrinsic.properties import split_properties
from intrinsic.splits import load_split

with logged(snakemake.log[0], "dataset_properties") as log:  # noqa: F821 (injected by Snakemake)
    torch.set_num_threads(snakemake.threads)  # noqa: F821
    cache = load_cache(snakemake.input.cache)  # noqa: F821
    record = split_properties(
        cache,
        load_split(snakemake.input.split, cache),  # noqa: F821
        seed=int(snakemake.wildcards.seed),  # noqa: F821
        noise=snakemake.params.background["noise"],  # noqa: F821
        background_threshold=snakemake.params.background["threshold"] or 0,  # noqa: F821
        rank_energy=snakemake.params.rank_energy,  # noqa: F821
        **snakemake.params.options,  # noqa: F821
    )
    write_json(snakemake.output[0], record)  # noqa: F821
    log.info("%s", record)
