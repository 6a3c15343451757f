"""Data layer: loaders, registry, splits, out-of-distribution transforms, augmentation, text corpora.

Quick use::

    from jaxnets import data
    split = data.get_split("fashion_mnist", flatten_images=True)   # 10k/2k/10k, float32 [0, 1]
    raw = data.load("cifar10")              # RawData, raw uint8; raw.source names the copy used
    x_up = data.shift_up(split.x_test.reshape(-1, 28, 28))         # doc 003's "up 4 px"

See :mod:`jaxnets.data.registry` for where data sets are looked for (``JAXNETS_DATA``,
``~/.cache/jaxnets``, ``/usr/share/datasets``, ``JAXNETS_SHARED_DATA``, download) and
:mod:`jaxnets.data.splits` for the split sizes and seeds. The bundled MNIST-5k sample's
attribution is in ``jaxnets/data/README.md``.
"""

from jaxnets.data.readers import DataError, DataNotFoundError, list_image_folder, parse_cifar_batch, read_cifar_batch, read_cifar_batches, read_cifar_meta, read_csv_digits, read_idx, read_idx_images, read_idx_labels, read_idx_pair, read_image_folder, restricted_loads
from jaxnets.data.registry import CIFAR10_CLASSES, DATASETS, FASHION_MNIST_CLASSES, MNIST_CLASSES, RawData, cache_root, download_file, load, search_locations
from jaxnets.data.splits import SPLIT_SEED, Split, flatten, get_split, preprocess, split_cifar10, split_fashion_mnist, split_mnist, split_mnist_5k, stratified_indices, stratified_subset, to_float, to_nhwc
from jaxnets.data.transforms import ood_test_sets, rot90, rotate, shift_up, translate

__all__ = [
    # errors
    "DataError", "DataNotFoundError",
    # readers
    "read_idx", "read_idx_images", "read_idx_labels", "read_idx_pair", "read_csv_digits",
    "restricted_loads", "read_cifar_batch", "parse_cifar_batch", "read_cifar_batches",
    "read_cifar_meta", "list_image_folder", "read_image_folder",
    # registry
    "DATASETS", "MNIST_CLASSES", "FASHION_MNIST_CLASSES", "CIFAR10_CLASSES", "RawData",
    "cache_root", "search_locations", "download_file", "load",
    # splits and preprocessing
    "SPLIT_SEED", "Split", "stratified_indices", "stratified_subset", "split_mnist_5k",
    "split_mnist", "split_fashion_mnist", "split_cifar10", "to_float", "flatten", "to_nhwc",
    "preprocess", "get_split",
    # transforms
    "translate", "shift_up", "rot90", "rotate", "ood_test_sets",
]
