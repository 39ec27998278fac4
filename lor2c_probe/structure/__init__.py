"""Structural changes during training (MergeLoR2C, InjectLoR2C, IMLoR2C): schedule, policy, surgery, event log."""
