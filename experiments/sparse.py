"""Predict hidden tokens at continuous points of shapes (the write-up's open problem).

python -m experiments.sparse                      # the CPU-sized default: it generalises
python -m experiments.sparse --flagfile=experiments/flags/sparse_memorise_quick.flags

Its flags are made from the settings of rectbert/recipes/sparse.py, which does the work.
"""

from experiments import cli
from rectbert.recipes import sparse

if __name__ == "__main__":
    cli.main(sparse)
