"""The one exception type the CLI turns into a one-line error."""

from __future__ import annotations

from typing import Any


class UserError(Exception):
    """A mistake the user can fix: bad input, missing file, missing extra.

    The CLI prints ``tla-edge: error: <message>`` and exits non-zero; the
    message always names what was received and what was expected.
    """


def missing_extra(package: str, extra: str) -> UserError:
    """Builds the error for an optional dependency that is not installed.

    Args:
      package: the import name that failed, e.g. ``"tensorflow"``.
      extra: the pip extra that provides it, e.g. ``"train"``.

    Returns:
      A UserError telling the user what to install.
    """
    return UserError(
        f"{package} is not installed; install the '{extra}' extra: "
        f"pip install 'tla-edge[{extra}]'"
    )


def import_tensorflow(extra: str = "train") -> Any:
    """Imports TensorFlow, or says which extra provides it.

    Keras comes with TensorFlow, so a caller that needs ``keras`` calls this
    first and then imports ``keras`` plainly.

    Args:
      extra: the pip extra to name when TensorFlow is missing.

    Returns:
      The ``tensorflow`` module.

    Raises:
      UserError: TensorFlow is not installed.
    """
    try:
        import tensorflow as tf
    except ImportError as err:
        raise missing_extra("tensorflow", extra) from err
    return tf
