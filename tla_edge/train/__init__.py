"""Workstation side: prepare, augment, models, the training recipe, evaluate, plots.

TensorFlow is imported inside the functions that need it, never at module level.
"""
