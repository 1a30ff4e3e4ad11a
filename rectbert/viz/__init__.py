"""Figures: matplotlib's object API, numpy arrays in, one PNG out (base, panels, curves). Imports
geometry only: it draws what the layers above compute."""
