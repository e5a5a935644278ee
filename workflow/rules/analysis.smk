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
    log:
        "results/logs/grid_tables.log",
    benchmark:
        "results/benchmarks/grid_tables.tsv"
    localrule: True
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
    log:
        "results/logs/scaling_fits.log",
    benchmark:
        "results/benchmarks/scaling_fits.tsv"
    localrule: True
    conda:
        CONDA_ENV
    params:
        reference=REFERENCE,
        exclude_unfitted=config["analysis"]["exclude_unfitted"],
        cross_domain_exclude=config["analysis"]["cross_domain_exclude"],
    script:
        "../scripts/scaling_fits.py"


rule sharpness_robustness:
    input:
        "results/tables/attacks.csv",
    output:
        **figure("fig3_sharpness_robustness", "Robustness", key="fig3"),
        **figure("fig3_sharpness_robustness_all_eps", "Robustness", key="fig3_all_eps"),
        **figure("fig3_sharpness_robustness_accuracy", "Robustness", key="fig3_accuracy"),
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
    log:
        "results/logs/sharpness_robustness.log",
    benchmark:
        "results/benchmarks/sharpness_robustness.tsv"
    localrule: True
    conda:
        CONDA_ENV
    params:
        reference=REFERENCE,
        # Fig. 3 shows FGSM at eps = 2/255 as the paper; another configured attack when FGSM is not run.
        attack="fgsm" if "fgsm" in config["evaluation"]["attacks"] else config["evaluation"]["attacks"][0],
        eps_255=2,
    script:
        "../scripts/sharpness_robustness.py"


rule generalization_figures:
    input:
        "results/tables/runs.csv",
    output:
        # Named by figure (the script's keys); each PNG a report item, each PDF beside it.
        **figure("fig2_generalization_loss", "Generalization", key="fig2_generalization_loss"),
        **figure("fig2_generalization_accuracy", "Generalization", key="fig2_generalization_accuracy"),
        **figure("fig4_repr_generalization_loss", "Representations", key="fig4_repr_generalization_loss"),
        **figure("fig4_repr_generalization_accuracy", "Representations", key="fig4_repr_generalization_accuracy"),
        **figure("fig4_repr_generalization_loss_mle", "Representations", key="fig4_repr_generalization_loss_mle"),
        **figure(
            "fig4_repr_generalization_accuracy_mle", "Representations", key="fig4_repr_generalization_accuracy_mle"
        ),
        **figure("fig5_repr_vs_data", "Representations", key="fig5_repr_vs_data"),
        **figure("fig5_repr_vs_data_twonn", "Representations", key="fig5_repr_vs_data_twonn"),
        summary="results/tables/figure_summaries.csv",
        guides="results/tables/figure_guides.csv",
    log:
        "results/logs/generalization_figures.log",
    benchmark:
        "results/benchmarks/generalization_figures.tsv"
    localrule: True
    conda:
        CONDA_ENV
    params:
        reference=REFERENCE,
        facet=config["analysis"]["facet"],
    script:
        "../scripts/generalization_figures.py"


# The related studies (config/README.md): each reads the merged tables of the whole grid.


rule noise_rank_study:
    input:
        "results/tables/runs.csv",
    output:
        **figure("noise_rank", "Background noise and rank"),
        table=report(
            "results/tables/noise_rank.csv",
            caption="../report/noise_rank_table.rst",
            category="Background noise and rank",
        ),
        markdown="results/tables/noise_rank.md",
        claim=report(
            "results/tables/noise_rank_claim.csv",
            caption="../report/noise_rank_claim.rst",
            category="Background noise and rank",
        ),
    log:
        "results/logs/noise_rank_study.log",
    benchmark:
        "results/benchmarks/noise_rank_study.tsv"
    localrule: True
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
        **figure("variants", "Noise class and illusive samples"),
        **figure("overfitting", "Noise class and illusive samples", key="overfitting"),
        table=report(
            "results/tables/variants.csv",
            caption="../report/variants_table.rst",
            category="Noise class and illusive samples",
        ),
        markdown="results/tables/variants.md",
    log:
        "results/logs/variant_study.log",
    benchmark:
        "results/benchmarks/variant_study.tsv"
    localrule: True
    conda:
        CONDA_ENV
    script:
        "../scripts/variant_study.py"


rule sensitivity_study:
    input:
        "results/tables/runs.csv",
    output:
        **figure("jacobian_generalization", "Sensitivity"),
        table=report(
            "results/tables/jacobian_generalization.csv",
            caption="../report/jacobian_generalization_table.rst",
            category="Sensitivity",
        ),
        markdown="results/tables/jacobian_generalization.md",
    log:
        "results/logs/sensitivity_study.log",
    benchmark:
        "results/benchmarks/sensitivity_study.tsv"
    localrule: True
    conda:
        CONDA_ENV
    script:
        "../scripts/sensitivity_study.py"


# Which versions of the library (intrinsic.provenance) the records behind the tables come from.
# Snakemake does not rerun results when only the library changes; the hash as a param makes it
# rerun this (seconds) job then, so that its "current" column compares with the code of now.
from intrinsic.provenance import library_hash


rule code_versions:
    input:
        "results/tables/dataset_properties.csv",
        "results/tables/label_sharpness.csv",
        "results/tables/runs.csv",
        ["results/tables/invariance.csv"] if INVARIANCE_RESOLUTIONS else [],
    output:
        report("results/tables/code_versions.csv", caption="../report/code_versions.rst", category="Tables"),
    log:
        "results/logs/code_versions.log",
    benchmark:
        "results/benchmarks/code_versions.tsv"
    localrule: True
    conda:
        CONDA_ENV
    params:
        library_hash=library_hash(),
    script:
        "../scripts/code_versions.py"
