"""rectbert: masked-token transformers that inpaint squares and rectangles (JAX/Flax)."""

from rectbert.codebook import kmeans
from rectbert.shapes import coverage, downsample

__all__ = ["coverage", "downsample", "kmeans"]
__version__ = "0.1.0"
