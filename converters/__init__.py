"""Keras -> TFLite conversion, installed as ``tla_edge.converters``.

``tflite`` converts (and returns the model as ``bytes``, writing nothing);
``calibration`` picks the calibration and validation crops; ``qat`` fine-tunes
a quantization-aware copy; ``parity`` compares a converted model with the
Keras one; ``edgetpu`` checks and compiles for the Coral Edge TPU;
``outputs`` names and writes the files; ``export`` is the convert job as one
function, which the ``tla-edge convert`` command (:mod:`tla_edge.cli.convert`)
calls. TensorFlow is imported inside the functions that need it.
"""
