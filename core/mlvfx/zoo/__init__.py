"""The model zoo: on-demand download, verification, a shared cache, and offline mirrors.

Models are never bundled: ``fetch`` resolves a model id to a verified local file, trying the cache,
then local mirrors, then the network (see :mod:`mlvfx.zoo.resolve`). Importing this package does
no I/O and imports neither torch nor requests.

Example:
    >>> from mlvfx import zoo
    >>> path = zoo.fetch("material")                 # doctest: +SKIP
    >>> state = zoo.load_state_dict(path)            # doctest: +SKIP
"""

from mlvfx.zoo.cache import BlobCache, default_caches
from mlvfx.zoo.download import ByteProgressFn, DownloadOptions
from mlvfx.zoo.manifest import (
    IOSpec,
    Manifest,
    ModelEntry,
    TensorSpec,
    ZooFile,
    default_manifest_path,
    load_manifest,
    parse_manifest,
)
from mlvfx.zoo.resolve import available_locally, cached_path, fetch, fetch_file, fetch_model, mirror_dirs
from mlvfx.zoo.weights import load_state_dict, load_weights

__all__ = [
    "BlobCache",
    "ByteProgressFn",
    "DownloadOptions",
    "IOSpec",
    "Manifest",
    "ModelEntry",
    "TensorSpec",
    "ZooFile",
    "available_locally",
    "cached_path",
    "default_caches",
    "default_manifest_path",
    "fetch",
    "fetch_file",
    "fetch_model",
    "load_manifest",
    "load_state_dict",
    "load_weights",
    "mirror_dirs",
    "parse_manifest",
]
