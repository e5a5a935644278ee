"""Intrinsic dataset properties and generalization (Konz & Mazurowski, ICLR 2024).

The library behind the Snakemake workflow; importable and testable without Snakemake.
Modules:
    io          atomic file writes
    cache       RawDataset -> compact uint8 cache on disk, and back
    sources     every dataset source behind load_source: embedded generators (images that ship
                with installed packages, synthetic sets) and readers of real files on disk
    splits      class-balanced, nested, group-disjoint train/test splits
    estimators  intrinsic dimension (MLE, TwoNN) and label sharpness K_F
    properties  dataset properties of one split
    tables      merging per-split results into tidy tables
    provenance  which code produced a record or table row (version, commit, library hash)
    figures     the study's figures
"""

__version__ = "0.1.0"
