"""Joint samples of a trained sparse or grid run, scored against the scene's prior.

python -m experiments.sample --workdir=runs/sparse_anycount_quick [--sample_visible=2,8]

Its flags are made from the settings of rectbert/recipes/sample.py, which does the work.
"""

from experiments import cli
from rectbert.recipes import sample

if __name__ == "__main__":
    cli.main(sample)
