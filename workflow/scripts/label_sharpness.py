"""Rule label_sharpness: K_F of every class pair of one dataset that the workflow uses."""

import torch

from intrinsic.cache import load_cache
from intrinsic.io import write_json
from intrinsic.logs import logged
from intrinsic.properties import dataset_sharpness

with logged(snakemake.log[0], "label_sharpness") as log:
    torch.set_num_threads(snakemake.threads)
    params = snakemake.params
    records = dataset_sharpness(load_cache(snakemake.input.cache), params.seeds,
                                pairings=params.pairings, samples=params.samples,
                                class_pairs=params.class_pairs)
    write_json(snakemake.output[0], {"pairs": records})
    for record in records:
        log.info("%s", record)
