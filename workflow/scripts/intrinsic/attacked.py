"""Attacked examples (App. D.1 of the paper): which grid runs record them, which test images
they record, and how the attacked images are stored in the run's evaluation record.

Only the standard library at import: the workflow's common.smk imports this module when
Snakemake parses the workflow (``chosen_runs``), where numpy need not be installed; the image
codec imports numpy when called, as the jobs that use it have it.

Storage of an attacked image (``encode_image``): FGSM moves every pixel of a uint8 cache image
(x = u / 255) by exactly eps = eps_255 / 255 or not at all (a zero gradient, or clipping at 0
or 1), so for an integer eps_255 the attacked image is again a multiple of 1/255 and is stored
losslessly as uint8 (pixel = value / 255). Another budget gives an image off that grid: it is
stored as float16 in [0, 1] (within 2.5e-4 of the attacked image, a sixteenth of 1/255). Either
way the raw bytes are base64 text in the JSON record, with the array's shape beside them.
"""

from __future__ import annotations

import base64
import math

from . import grid

# The evaluation record's key, and the one run option that enables it (common.smk).
RECORD_KEY = "attacked_examples"
# The study axes' preferred values for the chosen run: the reference grid (grid.REFERENCE); an
# axis not named there (and a value the grid lacks) takes its first value.
PREFERRED = grid.REFERENCE
# uint8 rounding must land within this of the attacked image times 255 (float32 arithmetic of
# u / 255 + eps is off by ~1e-5 at most); anything further is not a multiple of 1/255.
UINT8_TOLERANCE = 1e-3


def chosen_runs(axes: dict[str, list], domain_of: dict[str, str], domains) -> list[dict]:
    """The runs that record attacked examples: one per dataset of ``axes["dataset"]`` whose
    domain (``domain_of[dataset]``) is in ``domains``, in the grid's dataset order.

    ``axes``: the grid's axes in order with their typed values (common.smk's AXES), dataset
    first. The run of each dataset: the largest ``n_train``, the preferred value of a study axis
    (noise 0, variant standard) where the grid has it, and the first value of every other axis
    (the first model of training.models, the first seed). Returns typed keys in axis order."""
    if "dataset" not in axes:
        raise ValueError(f"chosen_runs: the axes {list(axes)} lack 'dataset'")
    fixed = {}
    for name, values in axes.items():
        if name == "dataset":
            continue
        if not values:
            raise ValueError(f"chosen_runs: axis {name!r} has no values")
        if name == "n_train":
            fixed[name] = max(values)
        elif name in PREFERRED and PREFERRED[name] in values:
            fixed[name] = PREFERRED[name]
        else:
            fixed[name] = values[0]
    wanted = set(domains)
    return [{name: (dataset if name == "dataset" else fixed[name]) for name in axes}
            for dataset in axes["dataset"] if domain_of[dataset] in wanted]


def select_examples(labels, n: int) -> list[int]:
    """Positions of ``n`` test images in the test set's order (``labels``: their binary labels
    in that order), alternating between the classes so that both are shown: the first image of
    class 0, the first of class 1, the second of class 0, ...; when one class runs out, the
    other's next ones."""
    labels = [int(label) for label in labels]
    if not 0 <= n <= len(labels):
        raise ValueError(f"attacked examples: n = {n} must lie in 0..{len(labels)}, the size of the test set")
    queues = {cls: [i for i, label in enumerate(labels) if label == cls] for cls in sorted(set(labels))}
    chosen = []
    while len(chosen) < n:
        for cls in list(queues):
            if queues[cls] and len(chosen) < n:
                chosen.append(queues[cls].pop(0))
    return chosen


def exact_uint8(eps_255: float) -> bool:
    """Whether FGSM at this budget keeps a uint8 image on the 1/255 grid (stored as uint8)."""
    return math.isfinite(eps_255) and float(eps_255).is_integer()


def encode_image(image, eps_255: float) -> dict:
    """An attacked image (float, [0, 1], shape (C, H, W)) as {"encoding", "shape", "data"}:
    uint8 (value / 255) for an integer ``eps_255``, else little-endian float16; data = base64."""
    import numpy as np  # here: common.smk imports this module where numpy may be missing

    image = np.asarray(image, dtype=np.float64)
    if exact_uint8(eps_255):
        scaled = image * 255.0
        stored = np.rint(scaled)
        off = float(np.abs(scaled - stored).max(initial=0.0))
        low, high = float(stored.min(initial=0.0)), float(stored.max(initial=0.0))
        if off > UINT8_TOLERANCE or not 0 <= low <= high <= 255:
            raise ValueError(f"attacked examples: the image is not on the 1/255 grid of 0..255 ({off:.3g} of a "
                             "level off, or outside the range); was it attacked from a uint8 image at an integer "
                             "eps_255?")
        encoding, raw = "uint8", stored.astype(np.uint8)
    else:
        encoding, raw = "float16", image.astype("<f2")
    return {"encoding": encoding, "shape": list(raw.shape), "data": base64.b64encode(raw.tobytes()).decode("ascii")}


def decode_image(stored: dict, where: str = "attacked example"):
    """``encode_image``'s dict back as an array: uint8 (0..255) or float16 ([0, 1])."""
    import numpy as np

    try:
        dtype = {"uint8": np.uint8, "float16": np.dtype("<f2")}[stored["encoding"]]
        shape = tuple(int(s) for s in stored["shape"])
        raw = base64.b64decode(stored["data"], validate=True)
        return np.frombuffer(raw, dtype=dtype).reshape(shape).copy()
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{where}: cannot decode the stored image ({type(error).__name__}: {error})") from None


def on_255_scale(image):
    """A decoded image as float64 on the 0..255 scale of the cache's uint8 images."""
    import numpy as np

    image = np.asarray(image)
    return image.astype(np.float64) if image.dtype == np.uint8 else image.astype(np.float64) * 255.0
