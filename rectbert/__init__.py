"""rectbert: masked-token transformers that inpaint squares and rectangles (JAX/Flax)."""

from rectbert.codebook import kmeans
from rectbert.inference import load_run
from rectbert.scenes import scene
from rectbert.shapes import coverage, downsample

__all__ = ["coverage", "downsample", "kmeans", "load_run", "scene"]
__version__ = "0.1.0"
