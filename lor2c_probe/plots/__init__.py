"""Figures: analysis tables in, figures out. Layout only; no computation beyond pivoting."""
