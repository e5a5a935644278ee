"""Rule make_split: the class-balanced, group-disjoint split of one (dataset, N, seed)."""

from intrinsic.cache import load_cache
from intrinsic.logs import logged
from intrinsic.splits import check_distinct_training_images, make_split

with logged(snakemake.log[0], "make_split") as log:
    w = snakemake.wildcards
    cache = load_cache(snakemake.input.cache)
    split = make_split(
        w.dataset, cache.labels, cache.groups, cache.classes,
        n_train=int(w.n_train), n_test=snakemake.params.n_test,
        seed=int(w.seed), pairs=snakemake.params.class_pairs,
        cache_sha256=cache.meta["sha256"],
    )
    # knn_k from the config, not a param: editing it must not remake (and so retrain) every split.
    distinct = check_distinct_training_images(
        cache, split, snakemake.config["properties"]["knn_k"],
        where=f"dataset {w.dataset!r}, N={w.n_train}, seed={w.seed}")
    split.save(snakemake.output[0])
    log.info("%s N=%s seed=%s: %s, %d train (%d distinct) / %d test", w.dataset, w.n_train, w.seed,
             " vs ".join(split.classes), len(split.train_idx), distinct, len(split.test_idx))
