"""Geometry, the lowest layer: exact coverage and downsampling of rectangles (shapes), exact
polygon areas in cells (polygons), and the patch codebook (codebook). Imports nothing of
rectbert but its foundation (config, files, warn)."""
