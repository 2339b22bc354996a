"""The README's entry point: :class:`~tla_edge.runtime.pipeline.Pipeline` and its result."""

from tla_edge.runtime.pipeline import DEFAULT_LIVE_FRAMES, Pipeline, LivenessResult

__all__ = ["DEFAULT_LIVE_FRAMES", "Pipeline", "LivenessResult"]
