"""Datasets for cnnbench: a registry of datasets, verified and cached sources, seeded splits, a
tensor loader.

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

Modules: ``specs`` (the dataset registry: ``register_dataset``, names, specs; no files, no
torch), ``source_base`` (the Source interface), ``sources`` (torchvision layouts: files,
checksums, downloads, decoding; ``source_for``), ``imagefolder`` (image folders and their
Source), ``cache`` (data/cache roots, cached tensors), ``datasets`` (load_dataset, get_spec),
``split`` (split_indices), ``loader`` + ``augment`` (batches). Imports run one way: datasets ->
sources -> imagefolder -> source_base -> cache/specs.

The names below are loaded on first use, so ``from cnnbench.data.specs import list_datasets``
(what the command line's help and name checks need) imports no torch.
"""

from __future__ import annotations

from cnnbench.lazy import lazy_names

_WHERE = {
    "AUGMENTATIONS": "augment", "parse_augment": "augment",
    "resolve_cache_dir": "cache", "resolve_data_dir": "cache",
    "LoadedDataset": "datasets", "dataset_info": "datasets", "get_spec": "datasets",
    "load_dataset": "datasets",
    "DatasetCorruptError": "errors", "DatasetMissingError": "errors",
    "TensorLoader": "loader", "shard_bounds": "loader",
    "DatasetSpec": "specs", "list_datasets": "specs", "register_dataset": "specs",
    "resolve_dataset_name": "specs",
    "split_indices": "split", "split_sizes": "split",
}

__all__ = sorted(_WHERE)


__getattr__, __dir__ = lazy_names(__name__, _WHERE)
