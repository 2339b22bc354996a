"""The README's frame sources: :func:`~tla_edge.runtime.sources.open_source` and :class:`Frame`."""

from tla_edge.runtime.sources import Frame, open_source

__all__ = ["Frame", "open_source"]
