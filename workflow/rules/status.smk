# Where a long grid run stands: `make status` (README.md, "Seeing a long run"). The rule reads the
# files of the grid's runs but takes none as an input, so it makes nothing else run; it is not
# part of rule all. Run it with --nolock --force beside the Snakemake process running the grid.


rule status:
    output:
        html="results/status.html",
    log:
        "results/logs/status.log",
    localrule: True
    conda:
        CONDA_ENV
    params:
        runs=status_runs,
        # plain strings: the IOFile objects hold their rule, which a rule script cannot be sent
        files={
            "outputs": [str(path) for path in rules.run_model.output],
            "log": str(rules.run_model.log[0]),
            "benchmark": str(rules.run_model.benchmark),
            "checkpoints": str(rules.run_model.params.checkpoints),
        },
        live_window_s=status_live_windows(),
        gpus=config["training"]["gpus"],
    script:
        "../scripts/status.py"
