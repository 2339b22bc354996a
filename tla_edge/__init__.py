"""tla-edge: face liveness from Keras training to int8 TFLite on edge devices.

``import tla_edge`` is cheap: it never imports TensorFlow, MediaPipe or a
TFLite runtime. Those load inside the functions and classes that need them.
"""

__version__ = "0.1.0"

from tla_edge.errors import UserError  # noqa: E402

__all__ = ["UserError", "__version__"]
