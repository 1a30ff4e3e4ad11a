"""rectbert: masked-token transformers that inpaint squares and rectangles (JAX/Flax)."""

from rectbert.analysis.samples.sampler import SampleConfig, sample
from rectbert.analysis.trained import Run, load_run
from rectbert.geometry.codebook import kmeans
from rectbert.geometry.shapes import coverage, downsample
from rectbert.scenes import scene

__all__ = ["Run", "SampleConfig", "coverage", "downsample", "kmeans", "load_run", "sample", "scene"]
__version__ = "0.1.0"
