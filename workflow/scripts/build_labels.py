"""Build a dataset's label CSV from its official annotation spreadsheet (run once, by hand).

    python workflow/scripts/build_labels.py dbc --boxes Annotation_Boxes.xlsx \\
        --mapping Breast-Cancer-MRI-filepath_filename-mapping.xlsx --out dbc_slice_labels.csv \\
        [--margin 5] [--box-end exclusive] [--root /path/to/download]
    python workflow/scripts/build_labels.py oai --grades kxr_sq_bu00.txt --images knees/ \\
        --out oai_knees.csv [--missing-grade drop]
    python workflow/scripts/build_labels.py prostate --targets "Target Data.csv" \\
        --out prostate_series_labels.csv [--aggregate max]

The task definitions are the study authors' (intrinsic/annotations.py); config/README.md,
section "Building label CSVs", says which recipe option reads which column. The CSV is written
atomically; one summary line (counts per label, no ids) goes to stdout, errors to stderr.
"""

import argparse
import sys

# Run as a script, Python puts this folder first on sys.path, so the library imports as in
# the rule scripts.
from intrinsic.annotations import (DBC_BOX_END, DBC_MARGIN, PROSTATE_AGGREGATES, AnnotationError, build_dbc,
                                   build_oai, build_prostate, check_out_is_not_input, write_labels)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="build_labels.py", description=__doc__.split("\n\n")[0])
    sub = top.add_subparsers(dest="dataset", required=True)
    dbc = sub.add_parser("dbc", help="Duke-Breast-Cancer-MRI: slices inside / outside the tumour box")
    dbc.add_argument("--boxes", required=True, help="Annotation_Boxes (.xlsx or .csv)")
    dbc.add_argument("--mapping", required=True, help="Breast-Cancer-MRI-filepath_filename-mapping (.xlsx or .csv)")
    dbc.add_argument("--margin", type=int, default=DBC_MARGIN,
                     help=f"slices next to the box left out as negatives (default {DBC_MARGIN})")
    dbc.add_argument("--box-end", choices=DBC_BOX_END, default="exclusive",
                     help="exclusive: the authors' start <= slice < End Slice (default); "
                          "inclusive: start <= slice <= end with a symmetric margin")
    dbc.add_argument("--root", help="the download root classic_path is relative to: check every file exists "
                                    "(and apply the authors' 1-0NN.dcm -> 1-NN.dcm fix)")
    oai = sub.add_parser("oai", help="Osteoarthritis Initiative: KL grade of each knee crop")
    oai.add_argument("--grades", required=True, help="kxr_sq_bu00.txt (pipe-separated), or .csv / .xlsx")
    oai.add_argument("--images", required=True, help="folder of knee crops {ID}_{R|L}.png (searched recursively)")
    oai.add_argument("--missing-grade", choices=("drop", "error"), default="drop",
                     help="a knee image without a READPRJ 15 grade: drop and count (default) or stop")
    prostate = sub.add_parser("prostate", help="Prostate-MRI-US-Biopsy: UCLA score of each ultrasound series")
    prostate.add_argument("--targets", required=True, help="the collection's Target Data (.csv or .xlsx)")
    prostate.add_argument("--aggregate", choices=PROSTATE_AGGREGATES, default="max",
                          help="score of a series with several targets: max (most severe, default) or first")
    for command in (dbc, oai, prostate):
        command.add_argument("--out", required=True, help="the label CSV to write")
    return top


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.dataset == "dbc":
            check_out_is_not_input(args.out, [args.boxes, args.mapping])
            labels = build_dbc(args.boxes, args.mapping, margin=args.margin, box_end=args.box_end, root=args.root)
        elif args.dataset == "oai":
            check_out_is_not_input(args.out, [args.grades])
            labels = build_oai(args.grades, args.images, args.out,
                               missing="raise" if args.missing_grade == "error" else "drop")
        else:
            check_out_is_not_input(args.out, [args.targets])
            labels = build_prostate(args.targets, aggregate=args.aggregate)
        write_labels(labels, args.out)
    except (AnnotationError, OSError) as error:
        print(f"build_labels.py {args.dataset}: error: {error}", file=sys.stderr)
        return 1
    print(labels.summary(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
