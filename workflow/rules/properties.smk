rule dataset_properties:
    input:
        cache=CACHE,
        split=f"results/splits/{SPLIT_PATH}.npz",
    output:
        f"results/properties/{PROPERTIES_PATH}.json",
    log:
        f"results/logs/dataset_properties/{PROPERTIES_PATH}.log",
    benchmark:
        f"results/benchmarks/dataset_properties/{PROPERTIES_PATH}.tsv"
    # Minutes each: on a cluster, profiles/default packs one dataset's worth into one submission.
    group:
        "properties"
    conda:
        CONDA_ENV
    threads: config["properties"]["threads"]
    resources:
        mem_mb=config["properties"]["mem_mb"],
    params:
        options={key: config["properties"][key] for key in ("knn_k", "twonn_discard_fraction")},
        rank_energy=config["rank"]["energy"],
        background=background_options,
    script:
        "../scripts/dataset_properties.py"


# K_F is a property of the dataset's class pair, not of a split: once per dataset, for the pairs
# the seeds use and the first `sharpness_pairings` pairs that Fig. 1 averages.
rule label_sharpness:
    input:
        cache=CACHE,
    output:
        "results/properties/{dataset}/label_sharpness.json",
    log:
        "results/logs/label_sharpness/{dataset}.log",
    benchmark:
        "results/benchmarks/label_sharpness/{dataset}.tsv"
    group:
        "properties"
    conda:
        CONDA_ENV
    threads: config["properties"]["threads"]
    resources:
        mem_mb=4000,
    params:
        seeds=SEEDS,
        pairings=config["properties"]["sharpness_pairings"],
        samples=config["properties"]["sharpness_samples"],
        class_pairs=lambda wildcards: CATALOG[wildcards.dataset].get("class_pairs"),
    script:
        "../scripts/label_sharpness.py"


rule dataset_properties_table:
    input:
        splits=split_records(f"results/properties/{PROPERTIES_PATH}.json"),
        sharpness=expand("results/properties/{dataset}/label_sharpness.json", dataset=DATASETS),
    output:
        splits=report(
            "results/tables/dataset_properties.csv",
            caption="../report/dataset_properties_table.rst",
            category="Dataset properties",
        ),
        sharpness=report(
            "results/tables/label_sharpness.csv",
            caption="../report/label_sharpness_table.rst",
            category="Dataset properties",
        ),
    log:
        "results/logs/dataset_properties_table.log",
    benchmark:
        "results/benchmarks/dataset_properties_table.tsv"
    localrule: True
    conda:
        CONDA_ENV
    script:
        "../scripts/dataset_properties_table.py"


rule figure_dataset_properties:
    input:
        splits="results/tables/dataset_properties.csv",
        sharpness="results/tables/label_sharpness.csv",
    output:
        **figure("fig1_dataset_properties", "Dataset properties"),
        summary="results/tables/fig1_dataset_properties_summary.csv",
    log:
        "results/logs/figure_dataset_properties.log",
    benchmark:
        "results/benchmarks/figure_dataset_properties.tsv"
    localrule: True
    conda:
        CONDA_ENV
    params:
        reference=REFERENCE,
    script:
        "../scripts/figure_dataset_properties.py"
