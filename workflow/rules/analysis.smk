# Tidy tables of the grid, the scaling-law fits, Table 1 and Figures 2-5.


rule grid_tables:
    input:
        runs=run_records(f"results/runs/{RUN_PATH}/evaluation.json"),
        properties="results/tables/dataset_properties.csv",
    output:
        runs=report("results/tables/runs.csv", caption="../report/runs_table.rst", category="Tables"),
        attacks=report("results/tables/attacks.csv", caption="../report/attacks_table.rst", category="Tables"),
        runs_parquet="results/tables/runs.parquet",
        attacks_parquet="results/tables/attacks.parquet",
    params:
        run_keys=list(RUN_AXES),
    log:
        "results/logs/grid_tables.log",
    benchmark:
        "results/benchmarks/grid_tables.tsv"
    conda:
        CONDA_ENV
    script:
        "../scripts/grid_tables.py"


rule scaling_fits:
    input:
        "results/tables/runs.csv",
    output:
        report("results/tables/fits.csv", caption="../report/fits_table.rst", category="Scaling laws"),
    log:
        "results/logs/scaling_fits.log",
    benchmark:
        "results/benchmarks/scaling_fits.tsv"
    conda:
        CONDA_ENV
    script:
        "../scripts/scaling_fits.py"


rule sharpness_robustness:
    input:
        "results/tables/attacks.csv",
    output:
        table=report(
            "results/tables/table1_sharpness_correlations.csv",
            caption="../report/table1.rst",
            category="Robustness",
        ),
        markdown="results/tables/table1_sharpness_correlations.md",
        png=report(
            "results/figures/fig3_sharpness_robustness.png",
            caption="../report/fig3_sharpness_robustness.rst",
            category="Robustness",
        ),
        pdf="results/figures/fig3_sharpness_robustness.pdf",
    log:
        "results/logs/sharpness_robustness.log",
    benchmark:
        "results/benchmarks/sharpness_robustness.tsv"
    conda:
        CONDA_ENV
    script:
        "../scripts/sharpness_robustness.py"


rule generalization_figures:
    input:
        "results/tables/runs.csv",
    output:
        fig2_loss=figure_report("fig2_generalization_loss", "Generalization"),
        fig2_accuracy=figure_report("fig2_generalization_accuracy", "Generalization"),
        fig4_loss=figure_report("fig4_repr_generalization_loss", "Representations"),
        fig4_accuracy=figure_report("fig4_repr_generalization_accuracy", "Representations"),
        fig5=figure_report("fig5_repr_vs_data", "Representations"),
        pdfs=expand(
            "results/figures/{name}.pdf",
            name=[
                "fig2_generalization_loss",
                "fig2_generalization_accuracy",
                "fig4_repr_generalization_loss",
                "fig4_repr_generalization_accuracy",
                "fig5_repr_vs_data",
            ],
        ),
        summary="results/tables/figure_summaries.csv",
    log:
        "results/logs/generalization_figures.log",
    benchmark:
        "results/benchmarks/generalization_figures.tsv"
    conda:
        CONDA_ENV
    script:
        "../scripts/generalization_figures.py"
