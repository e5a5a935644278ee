"""Rule invariance_properties (App. B.1): d_data of each seed's split at the largest N and K_F of
the seeds' class pairs, with the cache resized to one resolution and channel count, as JSON."""

import torch

from intrinsic.appendix import invariance_record
from intrinsic.cache import load_cache
from intrinsic.io import write_json
from intrinsic.logs import logged
from intrinsic.splits import load_split

with logged(snakemake.log[0], "invariance_properties") as log:
    torch.set_num_threads(snakemake.threads)
    params, wildcards = snakemake.params, snakemake.wildcards
    cache = load_cache(snakemake.input.cache)
    split_paths = list(snakemake.input.splits)
    if len(split_paths) != len(params.seeds):
        raise ValueError(f"{len(split_paths)} split files for the {len(params.seeds)} seeds {params.seeds}")
    splits = {int(seed): load_split(path, cache) for seed, path in zip(params.seeds, split_paths)}
    record = invariance_record(cache, splits, int(wildcards.resolution), int(wildcards.channels),
                               rank_energy=params.rank_energy, samples=params.samples,
                               class_pairs=params.class_pairs, **params.options)
    write_json(snakemake.output[0], record)
    log.info("%s at %s px, %s channel(s): d_mle %.3f, d_twonn %.3f, k_f %.4g (%.1f s)", record["dataset"],
             record["resolution"], record["channels"], record["d_mle"], record["d_twonn"], record["k_f"],
             record["seconds"])
