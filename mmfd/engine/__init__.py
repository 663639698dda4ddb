from . import hooks  # noqa: F401  (registers DiagnosticsHook)
