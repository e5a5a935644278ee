# The experiment grid: one training run per RUN_AXES combination, then its evaluation.
# Both rules share the group "run", so a cluster runs them in one job on one GPU allocation
# (the Snakefile scopes gpu as "local": a group asks for the most any of its steps needs).


rule train_model:
    input:
        cache=CACHE,
        split=f"results/splits/{SPLIT_PATH}.npz",
    output:
        model=model_file(f"results/models/{RUN_PATH}.pt"),
        record=f"results/runs/{RUN_PATH}/training.json",
    params:
        run=run_keys,
        training=training_settings,
        variant=variant_options,
        background=background_options,
        # Resume state of a killed job; not an output, so Snakemake leaves it in place.
        checkpoints=f"results/checkpoints/{RUN_PATH}",
    threads: config["training"]["threads"]
    resources:
        mem_mb=run_request("mem_mb"),
        runtime=run_request("train_runtime_min"),
        gpu=config["training"]["gpus"],
    group:
        "run"
    log:
        f"results/logs/train_model/{RUN_PATH}.log",
    benchmark:
        f"results/benchmarks/train_model/{RUN_PATH}.tsv"
    conda:
        CONDA_ENV
    script:
        "../scripts/train_model.py"


rule evaluate_model:
    input:
        cache=CACHE,
        split=f"results/splits/{SPLIT_PATH}.npz",
        model=f"results/models/{RUN_PATH}.pt",
        training=f"results/runs/{RUN_PATH}/training.json",
    output:
        record=f"results/runs/{RUN_PATH}/evaluation.json",
        jacobians=f"results/runs/{RUN_PATH}/jacobian_norms.npz",
    params:
        run=run_keys,
        evaluation={key: value for key, value in config["evaluation"].items() if key not in ("eps_255", "eps")},
        eps=ATTACK_EPS,
        knn_k=config["properties"]["knn_k"],
        rank_energy=config["rank"]["energy"],
        background=background_options,
        device=config["training"]["device"],
    threads: config["training"]["threads"]
    resources:
        mem_mb=run_request("mem_mb"),
        runtime=run_request("eval_runtime_min"),
        gpu=config["training"]["gpus"],
    group:
        "run"
    log:
        f"results/logs/evaluate_model/{RUN_PATH}.log",
    benchmark:
        f"results/benchmarks/evaluate_model/{RUN_PATH}.tsv"
    conda:
        CONDA_ENV
    script:
        "../scripts/evaluate_model.py"
