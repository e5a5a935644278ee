# Tidy tables of the grid, the scaling-law fits, Table 1 and Figures 2-5.


rule grid_tables:
    input:
        runs=run_records(f"results/runs/{RUN_PATH}/evaluation.json"),
        properties="results/tables/dataset_properties.csv",
    output:
        runs=report("results/tables/runs.csv", caption="../report/runs_table.rst", category="Tables"),
        attacks=report("results/tables/attacks.csv", caption="../report/attacks_table.rst", category="Tables"),
        epochs=report("results/tables/epochs.csv", caption="../report/epochs_table.rst", category="Tables"),
        runs_parquet="results/tables/runs.parquet",
        attacks_parquet="results/tables/attacks.parquet",
        epochs_parquet="results/tables/epochs.parquet",
    params:
        axis_types=axis_types(),
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
        fits=report("results/tables/fits.csv", caption="../report/fits_table.rst", category="Scaling laws"),
        cross_domain=report(
            "results/tables/fits_cross_domain.csv",
            caption="../report/fits_cross_domain.rst",
            category="Scaling laws",
        ),
        cross_domain_markdown=report(
            "results/tables/fits_cross_domain.md",
            caption="../report/fits_cross_domain.rst",
            category="Scaling laws",
        ),
    params:
        reference=REFERENCE,
        exclude_unfitted=config["analysis"]["exclude_unfitted"],
        cross_domain_exclude=config["analysis"]["cross_domain_exclude"],
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
        table_markdown="results/tables/table1_sharpness_correlations.md",
        by_domain=report(
            "results/tables/table1_sharpness_correlations_by_domain.csv",
            caption="../report/table1_by_domain.rst",
            category="Robustness",
        ),
        by_domain_markdown="results/tables/table1_sharpness_correlations_by_domain.md",
        accuracy=report(
            "results/tables/table1_sharpness_correlations_accuracy.csv",
            caption="../report/table1_accuracy.rst",
            category="Robustness",
        ),
        accuracy_markdown="results/tables/table1_sharpness_correlations_accuracy.md",
        points=report(
            "results/tables/table1_sharpness_points.csv",
            caption="../report/table1_points.rst",
            category="Robustness",
        ),
        fig3=figure_report("fig3_sharpness_robustness", "Robustness"),
        fig3_pdf="results/figures/fig3_sharpness_robustness.pdf",
        fig3_all_eps=figure_report("fig3_sharpness_robustness_all_eps", "Robustness"),
        fig3_all_eps_pdf="results/figures/fig3_sharpness_robustness_all_eps.pdf",
        fig3_accuracy=figure_report("fig3_sharpness_robustness_accuracy", "Robustness"),
        fig3_accuracy_pdf="results/figures/fig3_sharpness_robustness_accuracy.pdf",
    params:
        reference=REFERENCE,
        # Fig. 3 shows FGSM at eps = 2/255 as the paper; another configured attack when FGSM is not run.
        attack="fgsm" if "fgsm" in config["evaluation"]["attacks"] else config["evaluation"]["attacks"][0],
        eps_255=2,
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
        # Named by figure (the script's keys); each PNG a report item, each PDF beside it.
        fig2_generalization_loss=figure_report("fig2_generalization_loss", "Generalization"),
        fig2_generalization_loss_pdf="results/figures/fig2_generalization_loss.pdf",
        fig2_generalization_accuracy=figure_report("fig2_generalization_accuracy", "Generalization"),
        fig2_generalization_accuracy_pdf="results/figures/fig2_generalization_accuracy.pdf",
        fig4_repr_generalization_loss=figure_report("fig4_repr_generalization_loss", "Representations"),
        fig4_repr_generalization_loss_pdf="results/figures/fig4_repr_generalization_loss.pdf",
        fig4_repr_generalization_accuracy=figure_report("fig4_repr_generalization_accuracy", "Representations"),
        fig4_repr_generalization_accuracy_pdf="results/figures/fig4_repr_generalization_accuracy.pdf",
        fig4_repr_generalization_loss_mle=figure_report("fig4_repr_generalization_loss_mle", "Representations"),
        fig4_repr_generalization_loss_mle_pdf="results/figures/fig4_repr_generalization_loss_mle.pdf",
        fig4_repr_generalization_accuracy_mle=figure_report(
            "fig4_repr_generalization_accuracy_mle", "Representations"
        ),
        fig4_repr_generalization_accuracy_mle_pdf="results/figures/fig4_repr_generalization_accuracy_mle.pdf",
        fig5_repr_vs_data=figure_report("fig5_repr_vs_data", "Representations"),
        fig5_repr_vs_data_pdf="results/figures/fig5_repr_vs_data.pdf",
        fig5_repr_vs_data_twonn=figure_report("fig5_repr_vs_data_twonn", "Representations"),
        fig5_repr_vs_data_twonn_pdf="results/figures/fig5_repr_vs_data_twonn.pdf",
        summary="results/tables/figure_summaries.csv",
        guides="results/tables/figure_guides.csv",
    params:
        reference=REFERENCE,
        facet=config["analysis"]["facet"],
    log:
        "results/logs/generalization_figures.log",
    benchmark:
        "results/benchmarks/generalization_figures.tsv"
    conda:
        CONDA_ENV
    script:
        "../scripts/generalization_figures.py"


# The related studies (config/README.md): each reads the merged tables of the whole grid.


rule noise_rank_study:
    input:
        "results/tables/runs.csv",
    output:
        table=report("results/tables/noise_rank.csv", caption="../report/noise_rank_table.rst",
                     category="Background noise and rank"),
        markdown="results/tables/noise_rank.md",
        claim=report("results/tables/noise_rank_claim.csv", caption="../report/noise_rank_claim.rst",
                     category="Background noise and rank"),
        figure=figure_report("noise_rank", "Background noise and rank"),
        figure_pdf="results/figures/noise_rank.pdf",
    log:
        "results/logs/noise_rank_study.log",
    benchmark:
        "results/benchmarks/noise_rank_study.tsv"
    conda:
        CONDA_ENV
    script:
        "../scripts/noise_rank_study.py"


rule variant_study:
    input:
        runs="results/tables/runs.csv",
        attacks="results/tables/attacks.csv",
        epochs="results/tables/epochs.csv",
    output:
        table=report("results/tables/variants.csv", caption="../report/variants_table.rst",
                     category="Noise class and illusive samples"),
        markdown="results/tables/variants.md",
        figure=figure_report("variants", "Noise class and illusive samples"),
        figure_pdf="results/figures/variants.pdf",
        overfitting=figure_report("overfitting", "Noise class and illusive samples"),
        overfitting_pdf="results/figures/overfitting.pdf",
    log:
        "results/logs/variant_study.log",
    benchmark:
        "results/benchmarks/variant_study.tsv"
    conda:
        CONDA_ENV
    script:
        "../scripts/variant_study.py"


rule sensitivity_study:
    input:
        "results/tables/runs.csv",
    output:
        table=report("results/tables/jacobian_generalization.csv",
                     caption="../report/jacobian_generalization_table.rst", category="Sensitivity"),
        markdown="results/tables/jacobian_generalization.md",
        figure=figure_report("jacobian_generalization", "Sensitivity"),
        figure_pdf="results/figures/jacobian_generalization.pdf",
    log:
        "results/logs/sensitivity_study.log",
    benchmark:
        "results/benchmarks/sensitivity_study.tsv"
    conda:
        CONDA_ENV
    script:
        "../scripts/sensitivity_study.py"
