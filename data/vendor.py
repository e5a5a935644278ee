"""How the files in this folder were made from the provided copies (see README.md here).

    python data/vendor.py /path/to/shared/data

MNIST: the first 600 training images of each digit (6,000 of 60,000), in the MedMNIST .npz
layout (train_images (n, 28, 28) uint8, train_labels (n, 1) uint8) that the `medmnist` reader
reads. PneumoniaMNIST and BreastMNIST are copied unchanged.
"""

import shutil
import sys
from pathlib import Path

import numpy as np

PER_CLASS = 600


def main(source: Path, target: Path) -> None:
    with np.load(source / "mnist.npz") as mnist:
        images, labels = mnist["x_train"], mnist["y_train"]
    keep = np.sort(np.concatenate([np.flatnonzero(labels == digit)[:PER_CLASS] for digit in range(10)]))
    np.savez_compressed(target / "mnist_subset.npz", train_images=images[keep],
                        train_labels=labels[keep].reshape(-1, 1))
    for name in ("pneumoniamnist.npz", "breastmnist.npz"):
        shutil.copyfile(source / name, target / name)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(__file__).parent)
