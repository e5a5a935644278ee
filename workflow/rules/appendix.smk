# Three appendix experiments (config/README.md, "Appendix experiments"), each off unless the
# config asks for it (common.smk, appendix_outputs): App. B.1, d_data and K_F with the cache
# resized to other resolutions and channels; App. C.3, several labelings (tasks) of one image set
# ranked by K_F; App. D.1, clean and attacked test images with a run's predictions.


# d_data of each seed's split at the largest N and K_F of the seeds' class pairs, as rules
# dataset_properties and label_sharpness compute them, at one (resolution, channels).
rule invariance_properties:
    input:
        cache=CACHE,
        splits=lambda wildcards: expand(
            f"results/splits/{SPLIT_PATH}.npz", dataset=wildcards.dataset, n_train=max(N_TRAIN), seed=SEEDS
        ),
    output:
        INVARIANCE_PATH,
    log:
        "results/logs/invariance_properties/{dataset}/r{resolution}_c{channels}.log",
    benchmark:
        "results/benchmarks/invariance_properties/{dataset}/r{resolution}_c{channels}.tsv"
    wildcard_constraints:
        resolution="|".join(map(str, INVARIANCE_RESOLUTIONS)) or "(?!)",
        channels="|".join(map(str, INVARIANCE_CHANNELS)),
    group:
        "properties"
    conda:
        CONDA_ENV
    threads: config["properties"]["threads"]
    resources:
        mem_mb=config["properties"]["mem_mb"],
    params:
        seeds=SEEDS,
        options={key: config["properties"][key] for key in ("knn_k", "twonn_discard_fraction")},
        rank_energy=config["rank"]["energy"],
        samples=config["properties"]["sharpness_samples"],
        class_pairs=lambda wildcards: CATALOG[wildcards.dataset].get("class_pairs"),
    script:
        "../scripts/invariance_properties.py"


rule invariance_study:
    input:
        expand(INVARIANCE_PATH, dataset=DATASETS, resolution=INVARIANCE_RESOLUTIONS, channels=INVARIANCE_CHANNELS),
    output:
        **figure("invariance", "Appendix"),
        table=report("results/tables/invariance.csv", caption="../report/invariance_table.rst", category="Appendix"),
    log:
        "results/logs/invariance_study.log",
    benchmark:
        "results/benchmarks/invariance_study.tsv"
    localrule: True
    conda:
        CONDA_ENV
    script:
        "../scripts/invariance_study.py"


rule task_ranking:
    input:
        runs="results/tables/runs.csv",
        sharpness="results/tables/label_sharpness.csv",
        properties="results/tables/dataset_properties.csv",
    output:
        **figure("task_ranking", "Appendix"),
        table=report("results/tables/task_ranking.csv", caption="../report/task_ranking_table.rst", category="Appendix"),
    log:
        "results/logs/task_ranking.log",
    benchmark:
        "results/benchmarks/task_ranking.tsv"
    localrule: True
    conda:
        CONDA_ENV
    params:
        groups=TASK_GROUPS,
        reference=REFERENCE,
    script:
        "../scripts/task_ranking.py"


# App. D.1: clean and FGSM-attacked test images with the predictions of one run per dataset of
# the listed domains (evaluation.attacked_examples; common.smk, EXAMPLE_RUNS).
rule figure_attacked_examples:
    input:
        unpack(attacked_example_inputs),
    output:
        **figure("attacked_examples", "Robustness"),
    log:
        "results/logs/figure_attacked_examples.log",
    benchmark:
        "results/benchmarks/figure_attacked_examples.tsv"
    localrule: True
    conda:
        CONDA_ENV
    script:
        "../scripts/figure_attacked_examples.py"
