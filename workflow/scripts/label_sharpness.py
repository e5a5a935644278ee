"""Rule label_sharpness: K_F of every class pair of one dataset that the workflow uses."""

import torch

from intrinsic.cache import load_cache
from intrinsic.io import write_json
from intrinsic.logs import logged
from intrinsic.properties import dataset_sharpness

with logged(snakemake.log[0], "label_sharpness") as log:  # noqa: F821 (injected by Snakemake)
    torch.set_num_threads(snakemake.threads)  # noqa: F821
    params = snakemake.params  # noqa: F821
    records = dataset_sharpness(load_cache(snakemake.input.cache), params.seeds,  # noqa: F821
                                pairings=params.pairings, samples=params.samples,
                                class_pairs=params.class_pairs)
    write_json(snakemake.output[0], {"pairs": records})  # noqa: F821
    for record in records:
        log.info("%s", record)
