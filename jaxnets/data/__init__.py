"""Data layer: loaders, registry, splits, out-of-distribution transforms, augmentation, text corpora.

Quick use::

    from jaxnets import data
    split = data.get_split("fashion_mnist", flatten_images=True)   # 10k/2k/10k, float32 [0, 1]
    split.variant, split.source     # "full" / "sample" / "jpeg-copy" ("unverified": verify=False), and a label
    raw = data.load("cifar10", download=True)   # RawData, raw uint8, fetched if missing
    x_up = data.shift_up(split.x_test.reshape(-1, 28, 28))         # doc 003's "up 4 px"

See :mod:`jaxnets.data.registry` for where data sets are looked for (``path``, ``JAXNETS_DATA``,
``~/.cache/jaxnets``, ``/usr/share/datasets``, ``JAXNETS_SHARED_DATA``, download, the embedded
samples; ``JAXNETS_NO_SYSTEM_DATA=1`` skips system and shared copies) and
:mod:`jaxnets.data.splits` for the split sizes and seeds. The embedded samples, their checksums
and attribution are listed in ``jaxnets/data/README.md``.
"""

from jaxnets.data.readers import DataError, DataNotFoundError, list_image_folder, parse_cifar_batch, read_cifar_batch, read_cifar_batches, read_cifar_meta, read_csv_digits, read_idx, read_idx_images, read_idx_labels, read_idx_pair, read_image_folder, restricted_loads
from jaxnets.data.download import download_file
from jaxnets.data.registry import CIFAR10_CLASSES, DATASETS, FASHION_MNIST_CLASSES, MNIST_CLASSES, VARIANTS, DatasetSpec, RawData, RawText, cache_root, load, search_locations, system_data_enabled
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
    "DATASETS", "DatasetSpec", "VARIANTS", "MNIST_CLASSES", "FASHION_MNIST_CLASSES", "CIFAR10_CLASSES",
    "RawData", "RawText", "cache_root", "system_data_enabled", "search_locations", "download_file", "load",
    # splits and preprocessing
    "SPLIT_SEED", "Split", "stratified_indices", "stratified_subset", "split_mnist_5k",
    "split_mnist", "split_fashion_mnist", "split_cifar10", "to_float", "flatten", "to_nhwc",
    "preprocess", "get_split",
    # transforms
    "translate", "shift_up", "rot90", "rotate", "ood_test_sets",
]
