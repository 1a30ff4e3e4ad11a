"""Data: what a batch is and how it is drawn inside jit from (seed, step) — keys, masks, point
samplers, and the tasks (squares, grid, sparse). Imports geometry and scenes, nothing above."""
