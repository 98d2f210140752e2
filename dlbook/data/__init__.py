"""Datasets for the book: one registry, one cache, loaders that never substitute data.

See :mod:`dlbook.data.registry` for the cache (``DLBOOK_DATA``), checksums and offline errors.
"""

from dlbook.data.cifar import CIFAR10_CLASSES, load_cifar10
from dlbook.data.graphs import load_planetoid, load_ppi, read_ppi
from dlbook.data.images import PHOTOS, load_clothing, load_photo
from dlbook.data.mnist import (
    FASHION_CLASSES,
    ImageSplit,
    load_fashion_mnist,
    load_mnist,
    read_idx,
)
from dlbook.data.registry import (
    REGISTRY,
    DatasetUnavailable,
    Entry,
    catalogue,
    data_home,
    fetch,
    get,
    package_files,
    usage,
)
from dlbook.data.omniglot import (
    OmniglotImages,
    OneShotRun,
    load_omniglot,
    load_omniglot_runs,
)
from dlbook.data.series import load_ukgas, load_vic_elec
from dlbook.data.text import (
    SpamCorpus,
    load_analogies,
    load_sotu,
    load_spam_assassin,
    load_sst2,
    load_tiny_shakespeare,
    read_sst2,
    tokenize,
)

__all__ = [
    "PHOTOS",
    "REGISTRY",
    "DatasetUnavailable",
    "Entry",
    "ImageSplit",
    "data_home",
    "fetch",
    "catalogue",
    "get",
    "package_files",
    "usage",
    "load_clothing",
    "load_cifar10",
    "CIFAR10_CLASSES",
    "load_mnist",
    "load_fashion_mnist",
    "FASHION_CLASSES",
    "load_photo",
    "load_planetoid",
    "load_ppi",
    "load_tiny_shakespeare",
    "load_spam_assassin",
    "load_sotu",
    "load_analogies",
    "load_sst2",
    "read_sst2",
    "tokenize",
    "SpamCorpus",
    "load_omniglot",
    "load_omniglot_runs",
    "OmniglotImages",
    "OneShotRun",
    "load_ukgas",
    "load_vic_elec",
    "read_idx",
    "read_ppi",
]
