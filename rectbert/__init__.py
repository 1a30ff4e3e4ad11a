"""rectbert: masked-token transformers that inpaint squares and rectangles (JAX/Flax).

The public API (docs: design), loaded when first used: importing one layer of the library
(say rectbert.geometry.shapes) does not load the others.
"""

import importlib

_EXPORTS = {  # name -> the module that defines it
    "Run": "rectbert.analysis.trained",
    "SampleConfig": "rectbert.analysis.samples.sampler",
    "coverage": "rectbert.geometry.shapes",
    "downsample": "rectbert.geometry.shapes",
    "kmeans": "rectbert.geometry.codebook",
    "load_run": "rectbert.analysis.trained",
    "sample": "rectbert.analysis.samples.sampler",
    "scene": "rectbert.scenes",
}
__all__ = sorted(_EXPORTS)
__version__ = "0.1.0"


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'rectbert' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # found once
    return value


def __dir__():
    return sorted([*globals(), *_EXPORTS])
