# The experiment grid: one job per RUN_AXES combination trains a model and evaluates it in one
# process (torch imported and the data read once per run). Runs share the group "runs": a
# cluster profile may pack several into one submission (--group-components runs=R).


rule run_model:
    input:
        cache=CACHE,
        split=f"results/splits/{SPLIT_PATH}.npz",
    output:
        **model_output(f"results/models/{RUN_PATH}.pt"),
        training=f"results/runs/{RUN_PATH}/training.json",
        record=f"results/runs/{RUN_PATH}/evaluation.json",
        jacobians=f"results/runs/{RUN_PATH}/jacobian_norms.npz",
    log:
        f"results/logs/run_model/{RUN_PATH}.log",
    benchmark:
        f"results/benchmarks/run_model/{RUN_PATH}.tsv"
    group:
        "runs"
    conda:
        CONDA_ENV
    threads: config["training"]["threads"]
    resources:
        mem_mb=run_request("mem_mb"),
        runtime=run_runtime,
        gpu=config["training"]["gpus"],
    params:
        run=run_keys,
        training=training_settings,
        variant=variant_options,
        background=background_options,
        # EVALUATION_SETTINGS; with the attacked-examples option only in the runs chosen for it
        evaluation=evaluation_settings,
        # Resume state of a killed job; not an output, so Snakemake leaves it in place.
        checkpoints=f"results/checkpoints/{RUN_PATH}",
        checkpoint_every_s=config["training"]["checkpoint_minutes"] * 60,
        keep_checkpoint=config["training"]["keep_models"],
    script:
        "../scripts/run_model.py"
