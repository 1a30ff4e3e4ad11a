"""The model against the Bayes-optimal oracle at every visible count, for a trained sparse run.

python -m experiments.oracle_curve --workdir=runs/sparse_anycount_quick [--curve_visible=1,4,23]

Its flags are made from the settings of rectbert/recipes/oracle_curve.py, which does the work.
"""

from experiments import cli
from rectbert.recipes import oracle_curve

if __name__ == "__main__":
    cli.main(oracle_curve)
