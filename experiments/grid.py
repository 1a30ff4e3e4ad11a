"""Inpaint shapes on the 16x16 grid of 169 overlapping 4x4 patch tokens (k-means codebook).

python -m experiments.grid --flagfile=experiments/flags/grid_quick.flags

Its flags are made from the settings of rectbert/recipes/grid.py, which does the work.
"""

from experiments import cli
from rectbert.recipes import grid

if __name__ == "__main__":
    cli.main(grid)
