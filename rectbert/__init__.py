"""rectbert: masked-token transformers that inpaint squares and rectangles (JAX/Flax)."""

from rectbert.codebook import kmeans
from rectbert.inference import load_run
from rectbert.sampling import SampleConfig, sample
from rectbert.scenes import scene
from rectbert.shapes import coverage, downsample

__all__ = ["SampleConfig", "coverage", "downsample", "kmeans", "load_run", "sample", "scene"]
__version__ = "0.1.0"
