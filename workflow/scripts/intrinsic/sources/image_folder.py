"""Source type ``image_folder``: a class-folder tree root/<class>/**/*.png|jpg (ImageNet style),
or labels and groups taken from the relative path with regular expressions (MURA)."""

from __future__ import annotations

import os
from pathlib import Path

from ..cache import DatasetError, RawDataset
from .common import (
    DEFAULT_GROUP_SALT,
    FileNames,
    ReadContext,
    TaskLabels,
    check_bool,
    check_common,
    compile_regex,
    label_key,
    match_path,
    numeric_first,
    require_path,
    salted_hash,
)
from .image_files import decode_and_finish

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def _suffixes(extensions) -> tuple[str, ...]:
    return tuple(s.lower() if s.startswith(".") else "." + s.lower() for s in (extensions or IMAGE_SUFFIXES))


def _is_image_name(filename: str, suffixes: tuple[str, ...]) -> bool:
    return filename.lower().endswith(suffixes) and not filename.startswith(".")


def _holds_image(folder: str, suffixes: tuple[str, ...]) -> bool:
    """Whether ``folder`` or a folder below it holds an image file; stops at the first one.

    os.scandir, not os.walk: walk lists a whole folder before yielding it (an ImageNet class
    folder holds ~1300 files). Symlinked folders are not followed, as os.walk's default.
    """
    pending = [folder]
    while pending:
        below = []
        with os.scandir(pending.pop()) as entries:
            for entry in entries:
                if entry.is_dir():
                    if not entry.is_symlink():
                        below.append(entry.path)
                elif _is_image_name(entry.name, suffixes) and entry.is_file():
                    return True
        pending.extend(sorted(below, reverse=True))
    return False


def list_class_folders(name: str, root, extensions: list | None = None) -> list[str]:
    """The class folders of an image_folder tree: the folders directly under ``root`` that hold an
    image file (at any depth), in the order the reader gives the classes (numbers numerically,
    then text: plain sorted order for ImageNet's synsets). Cheap: nothing is decoded, and each
    folder is scanned only up to its first image file.
    """
    root_path = require_path(name, root)
    suffixes = _suffixes(extensions)
    with os.scandir(root_path) as entries:
        folders = [entry.name for entry in entries if entry.is_dir() and not entry.is_symlink()]
    return sorted((f for f in folders if _holds_image(str(root_path / f), suffixes)), key=numeric_first)


def read_image_folder(
    name: str,
    context: ReadContext,
    root: str | None = None,
    extensions: list | None = None,
    label_regex: str | None = None,
    group_regex: str | None = None,
    include_classes: list | None = None,
    image_max_scaling: bool = False,
    classes=None,
    drop_other: bool = False,
    min_per_class: int = 1,
    max_per_class: int | None = None,
    on_error: str = "raise",
    group_salt: str = DEFAULT_GROUP_SALT,
) -> RawDataset:
    """Images under ``root``, found recursively; label = first folder below root (ImageNet layout)
    or the first capture group of ``label_regex`` in the relative path (e.g. MURA's
    ``_(positive|negative)/``). Group = capture of ``group_regex`` in the relative path (e.g.
    ``(patient\\d+)/``), else the relative path itself; always salted-hashed. An image's
    ``max_per_class`` key is its relative path.

    With a ``classes`` list/mapping and no ``label_regex``, only the named class folders are
    listed, so a subset of ImageNet's 1000 folders is cheap. ``include_classes``: read only these
    class folders, while the task's classes stay every class folder (:func:`list_class_folders`)
    or ``classes``; the other classes are in ``RawDataset.classes`` with no image.
    """
    check_common(name, on_error, drop_other, min_per_class, max_per_class)
    check_bool(name, "image_max_scaling", image_max_scaling)
    root_path = require_path(name, root)
    suffixes = _suffixes(extensions)
    label_re = compile_regex(name, "label_regex", label_regex)
    group_re = compile_regex(name, "group_regex", group_regex)
    task = read_classes = None
    if include_classes is not None:
        task, read_classes = _included_classes(name, root_path, include_classes, label_re, classes, extensions)
        folders = [root_path / folder for folder in include_classes]
    elif label_re is None and classes is not None and not drop_other:
        wanted = TaskLabels.from_option(name, classes, []).value_to_class
        folders = [root_path / value for value in wanted]
        missing = [str(f) for f in folders if not f.is_dir()]
        if missing:
            raise DatasetError(f"dataset {name!r}: class folder(s) {missing} do not exist")
    else:
        folders = [root_path]
    relative = _list_images(root_path, folders, suffixes)
    if label_re is None:
        relative = [r for r in relative if "/" in r]  # files directly in root have no class folder
    if not relative:
        raise DatasetError(f"dataset {name!r}: no image files ({', '.join(suffixes)}) under {str(root_path)!r}")
    names = FileNames("file", relative, [str(root_path / r) for r in relative], group_salt)
    values = [label_key(match_path(name, "label_regex", label_re, names, i)) if label_re else r.split("/", 1)[0]
              for i, r in enumerate(relative)]
    groups = [salted_hash(group_salt, match_path(name, "group_regex", group_re, names, i) if group_re else r)
              for i, r in enumerate(relative)]
    if task is None:
        task = TaskLabels.from_option(name, classes, values)
    return decode_and_finish(name, f"image folder {str(root_path)!r}", names, values, groups, task, drop_other,
                             min_per_class, on_error, group_salt, context, keys=relative,
                             max_per_class=max_per_class, max_scaling=image_max_scaling, read_classes=read_classes)


def _list_images(root_path: Path, folders: list[Path], suffixes: tuple[str, ...]) -> list[str]:
    """The image files below ``folders``, relative to ``root_path``, in sorted walk order."""
    relative: list[str] = []
    for folder in folders:
        for dirpath, dirnames, filenames in os.walk(folder):
            dirnames.sort()
            for filename in sorted(filenames):
                if _is_image_name(filename, suffixes):
                    relative.append(Path(dirpath, filename).relative_to(root_path).as_posix())
    return relative


def _included_classes(name: str, root_path: Path, include_classes, label_re, classes, extensions
                      ) -> tuple[TaskLabels, set[int]]:
    """image_folder's ``include_classes``: the task over every class folder (or ``classes``) and
    the indices of the included ones."""
    if label_re is not None:
        raise DatasetError(f"dataset {name!r}: option 'include_classes' names class folders; it cannot be "
                           "combined with 'label_regex'")
    if (not isinstance(include_classes, list) or not include_classes
            or not all(isinstance(c, str) and c for c in include_classes)
            or len(set(include_classes)) != len(include_classes)):
        raise DatasetError(f"dataset {name!r}: option 'include_classes' must be a list of distinct class folder "
                           f"names, got {include_classes!r}")
    if classes is None:
        task = TaskLabels.from_option(name, None, list_class_folders(name, root_path, extensions))
        unknown = [c for c in include_classes if c not in task.value_to_class]
        where = f"class folders (holding an image) under {str(root_path)!r}"
    else:
        task = TaskLabels.from_option(name, classes, [])
        unknown = [c for c in include_classes if c not in task.value_to_class or not (root_path / c).is_dir()]
        where = f"class folders under {str(root_path)!r} named in 'classes'"
    if unknown:
        raise DatasetError(f"dataset {name!r}: option 'include_classes' names {unknown}, which are not {where}")
    return task, {task.value_to_class[c] for c in include_classes}
