"""What a device imports: LiteRT, OpenCV and NumPy (MediaPipe optional), never TensorFlow.

Nothing under ``tla_edge.runtime`` imports ``tla_edge.data``, ``tla_edge.train``,
``tla_edge.converters`` or ``tla_edge.cli`` (``tests/test_layout.py`` checks it).
"""
