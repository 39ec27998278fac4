"""Analyses: pure functions from recorded tables (pandas DataFrames) to result tables. No torch here."""
