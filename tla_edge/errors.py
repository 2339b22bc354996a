"""The one exception type the CLI turns into a one-line error."""


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
