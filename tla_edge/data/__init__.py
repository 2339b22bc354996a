"""Dataset formats a device reads too (``record`` and ``calibrate`` run on a Pi).

May import :mod:`tla_edge.runtime`; never ``tla_edge.train``, ``tla_edge.converters``
or ``tla_edge.cli``.
"""
