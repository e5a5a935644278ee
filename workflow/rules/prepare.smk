rule prepare_dataset:
    output:
        directory(CACHE),
    log:
        "results/logs/prepare_dataset/{dataset}.log",
    benchmark:
        "results/benchmarks/prepare_dataset/{dataset}.tsv"
    conda:
        CONDA_ENV
    threads: config["prepare"]["threads"]
    params:
        # Only what the cache is made of: class_pairs (make_split's) and channels (below) are
        # left out, so editing them, or spelling out the default channels, re-decodes nothing.
        spec=lambda wildcards: {key: CATALOG[wildcards.dataset][key] for key in ("domain", "source")},
        size=config["image"]["size"],
        # A catalog entry's own channels (RGB natural images beside grey radiographs) wins.
        channels=lambda wildcards: CATALOG[wildcards.dataset].get("channels", config["image"]["channels"]),
        drawn_pairs=drawn_pairs,
    script:
        "../scripts/prepare_dataset.py"


rule make_split:
    input:
        cache=CACHE,
    output:
        f"results/splits/{SPLIT_PATH}.npz",
    log:
        "results/logs/make_split/{dataset}/n{n_train}_seed{seed}.log",
    benchmark:
        "results/benchmarks/make_split/{dataset}/n{n_train}_seed{seed}.tsv"
    # Seconds of work each: on a cluster, profiles/default packs many into one submission.
    group:
        "splits"
    conda:
        CONDA_ENV
    params:
        n_test=config["splits"]["n_test"],
        class_pairs=lambda wildcards: CATALOG[wildcards.dataset].get("class_pairs"),
    script:
        "../scripts/make_split.py"
