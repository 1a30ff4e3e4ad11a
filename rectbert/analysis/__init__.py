"""Analysis and output: the Bayes-optimal oracle (oracle, smc), the oracle curve, joint samples
and their scores (samples/), the model as an image (render), a finished evaluation's figures
(report), and load_run (trained). Imports every layer below it."""
