"""Keras -> TFLite conversion, installed as ``tla_edge.converters``.

Library functions return the model as ``bytes`` and write nothing; the
``tla-edge convert`` command (:mod:`tla_edge.cli.convert`) writes files.
TensorFlow is imported inside the functions that need it.
"""
