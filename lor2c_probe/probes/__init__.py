"""Probes: callbacks that measure inside training and hand tidy rows to the run store.

Probes select parameters by name (the naming contract in ``naming.py``) and never import adapters.
"""
