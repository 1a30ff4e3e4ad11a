"""Which choices make the sparse model generalise: regimes x embeddings x attention (x scenes).

python -m experiments.sparse_study [--scenes=rect,rotated --regimes=fresh]

Its flags are made from the settings of rectbert/recipes/sparse_study.py, which does the work.
"""

from experiments import cli
from rectbert.recipes import sparse_study

if __name__ == "__main__":
    cli.main(sparse_study)
