rule dataset_properties:
    input:
        cache=CACHE,
        split=f"results/splits/{SPLIT_PATH}.npz",
    output:
        "results/properties/{dataset}/n{n_train}_seed{seed}.json",
    params:
        options={k: v for k, v in config["properties"].items() if k != "threads"},
    threads: config["properties"]["threads"]
    resources:
        mem_mb=4000,
    # Minutes each: on a cluster, profiles/default packs one dataset's worth into one submission.
    group:
        "properties"
    log:
        "results/logs/dataset_properties/{dataset}/n{n_train}_seed{seed}.log",
    benchmark:
        "results/benchmarks/dataset_properties/{dataset}/n{n_train}_seed{seed}.tsv"
    conda:
        CONDA_ENV
    script:
        "../scripts/dataset_properties.py"


rule dataset_properties_table:
    input:
        split_records("results/properties/{dataset}/n{n_train}_seed{seed}.json"),
    output:
        report(
            "results/tables/dataset_properties.csv",
            caption="../report/dataset_properties_table.rst",
            category="Dataset properties",
        ),
    log:
        "results/logs/dataset_properties_table.log",
    benchmark:
        "results/benchmarks/dataset_properties_table.tsv"
    conda:
        CONDA_ENV
    script:
        "../scripts/dataset_properties_table.py"


rule figure_dataset_properties:
    input:
        "results/tables/dataset_properties.csv",
    output:
        png=report(
            "results/figures/fig1_dataset_properties.png",
            caption="../report/fig1_dataset_properties.rst",
            category="Dataset properties",
        ),
        pdf="results/figures/fig1_dataset_properties.pdf",
        summary="results/tables/fig1_dataset_properties_summary.csv",
    log:
        "results/logs/figure_dataset_properties.log",
    benchmark:
        "results/benchmarks/figure_dataset_properties.tsv"
    conda:
        CONDA_ENV
    script:
        "../scripts/figure_dataset_properties.py"
