"""rectbert: masked-token transformers that inpaint squares and rectangles (JAX/Flax)."""

from setuptools import find_packages, setup

setup(
    name="rectbert",
    version="0.1.0",
    description="BERT-style inpainting of squares and rectangles, exact geometry, JAX/Flax",
    # the library only: experiments/ and benchmarks/ run from the checkout (docs: design)
    packages=find_packages(include=["rectbert", "rectbert.*"]),
    python_requires=">=3.11",
    # lower bounds: this CPU's pip resolution (jax 0.10.2, flax 0.12.8, orbax 0.12.8) and the
    # GPU machine's set (jax 0.11.2, flax 0.12.10, orbax-checkpoint 0.12.4) must both install
    install_requires=[
        "jax>=0.10.0,<0.12",
        "flax>=0.12.8,<0.13",
        "optax>=0.2.8,<0.3",
        "orbax-checkpoint>=0.12.4,<0.13",
        "numpy>=1.26",
        "matplotlib>=3.8",
        "absl-py>=2.1",
        "Hershey-Fonts>=2.1",  # the glyph scene's stroke fonts (MIT)
        "shapely>=2.0",  # thickens and unites the drawings' strokes into polygons
    ],
    extras_require={
        "test": [
            "pytest>=8",
            "pytest-xdist>=3.5",
            "chex>=0.1.90",
            "scikit-learn>=1.5",
            "scikit-image>=0.24",
            "hypothesis>=6.100",  # property tests (the flag space)
            "nbclient>=0.10",  # runs docs/tutorial.ipynb (the slow tier)
            "nbformat>=5.9",
            "ipykernel>=6.29",
            "kanjivg>=20250422",  # the kanji scene's tests (the package's own extra: kanji)
            "pytablericons>=1.0",  # the icon scene's tests (the package's own extra: icons)
            "svgelements>=1.9",  # an independent SVG reader: the curves' reference
        ],
        "docs": ["mkdocs>=1.6", "mkdocs-material>=9.5", "mkdocs-jupyter>=0.24"],
        "tensorboard": ["tensorboardX>=2.6"],
        # the kanji scene's drawings: KanjiVG (CC BY-SA 3.0, kanjivg.tagaini.net), read at
        # run time from the installed package (nothing derived from it is committed)
        "kanji": ["kanjivg>=20250422"],
        # the icon scene's drawings: Tabler Icons' outline SVGs (MIT, tabler.io/icons), read at
        # run time from the installed package (which brings pygame and Pillow along)
        "icons": ["pytablericons>=1.0"],
        # TPU VMs (launch.sh): libtpu matching jax; pip needs jax's libtpu find-links page
        "tpu": ["jax[tpu]>=0.10.0,<0.12"],
        # the PyTorch peer of benchmarks/train_throughput.py
        "peer": ["torch>=2.4", "transformers>=4.45"],
    },
)
