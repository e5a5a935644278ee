rule prepare_dataset:
    output:
        directory(CACHE),
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
        cache=CACHE,
    output:
        f"results/splits/{SPLIT_PATH}.npz",
    params:
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
