"""Inpaint n x n binary images of one square, every pixel a token (the write-up's part 1-2).

python -m experiments.squares --flagfile=experiments/flags/squares_20pct_quick.flags

Its flags are made from the settings of rectbert/recipes/squares.py, which does the work.
"""

from experiments import cli
from rectbert.recipes import squares

if __name__ == "__main__":
    cli.main(squares)
