from .diagnostics_hook import DiagnosticsHook

__all__ = ['DiagnosticsHook']
