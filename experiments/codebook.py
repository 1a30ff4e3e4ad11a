"""Fit the patch codebook alone and draw the write-up's first two figures.

python -m experiments.codebook [--scene=rotated --num_clusters=40]

Its flags are made from the settings of rectbert/recipes/codebook.py, which does the work.
"""

from experiments import cli
from rectbert.recipes import codebook

if __name__ == "__main__":
    cli.main(codebook)
