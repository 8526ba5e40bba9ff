"""Datasets for cnnbench: specs, verified and cached sources, seeded splits, a tensor loader.

```python
from cnnbench.data import get_spec, load_dataset, split_indices, TensorLoader
spec = get_spec("mnist")
ds = load_dataset("mnist")                      # uint8 N x C x H x W tensors, cached on disk
train_idx, val_idx = split_indices(len(ds.train_y), val_fraction=0.1, seed=0)
loader = TensorLoader(ds.train_x[train_idx], ds.train_y[train_idx], batch_size=128,
                      seed=0, mean=spec.mean, std=spec.std, augment="crop+flip")
loader.set_epoch(epoch)
for x, y in loader: ...
```

Modules: ``specs`` (DatasetSpec table and dataset names, no files), ``source_base`` (the
Source interface), ``sources`` (torchvision layouts: files, checksums, downloads, decoding;
``source_for``), ``imagefolder`` (image folders and their Source), ``cache`` (data/cache roots,
cached tensors), ``datasets`` (load_dataset, get_spec), ``split`` (split_indices), ``loader`` +
``augment`` (batches). Imports run one way: datasets -> sources -> imagefolder -> source_base
-> cache/specs.
"""

from cnnbench.data.augment import AUGMENTATIONS, parse_augment
from cnnbench.data.cache import resolve_cache_dir, resolve_data_dir
from cnnbench.data.datasets import LoadedDataset, dataset_info, get_spec, load_dataset
from cnnbench.data.errors import DatasetCorruptError, DatasetMissingError
from cnnbench.data.loader import TensorLoader, shard_bounds
from cnnbench.data.specs import DatasetSpec, list_datasets, register_dataset, resolve_dataset_name
from cnnbench.data.split import split_indices, split_sizes

__all__ = [
    "AUGMENTATIONS",
    "DatasetCorruptError",
    "DatasetMissingError",
    "DatasetSpec",
    "LoadedDataset",
    "TensorLoader",
    "dataset_info",
    "get_spec",
    "list_datasets",
    "load_dataset",
    "parse_augment",
    "register_dataset",
    "resolve_cache_dir",
    "resolve_data_dir",
    "resolve_dataset_name",
    "shard_bounds",
    "split_indices",
    "split_sizes",
]
