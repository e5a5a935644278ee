rule prepare_dataset:
    output:
        images="results/cache/{dataset}/images.npy",
        labels="results/cache/{dataset}/labels.npy",
        groups="results/cache/{dataset}/groups.npy",
        meta="results/cache/{dataset}/meta.json",
    params:
        spec=lambda wildcards: CATALOG[wildcards.dataset],
        size=config["image"]["size"],
        channels=config["image"]["channels"],
    threads: config["prepare"]["threads"]
    log:
        "results/logs/prepare_dataset/{dataset}.log",
    benchmark:
        "results/benchmarks/prepare_dataset/{dataset}.tsv"
    conda:
        CONDA_ENV
    script:
        "../scripts/prepare_dataset.py"


rule make_split:
    input:
        **CACHE_FILES,
    output:
        f"results/splits/{SPLIT_PATH}.npz",
    params:
        cache=cache_folder,
        n_test=config["splits"]["n_test"],
        class_pairs=lambda wildcards: CATALOG[wildcards.dataset].get("class_pairs"),
    # Seconds of work each: on a cluster, profiles/default packs many into one submission.
    group:
        "splits"
    log:
        "results/logs/make_split/{dataset}/n{n_train}_seed{seed}.log",
    benchmark:
        "results/benchmarks/make_split/{dataset}/n{n_train}_seed{seed}.tsv"
    conda:
        CONDA_ENV
    script:
        "../scripts/make_split.py"
