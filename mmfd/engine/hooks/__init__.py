from .diagnostics_hook import DiagnosticsHook
from .target_stats_hook import TargetStatsHook

__all__ = ['DiagnosticsHook', 'TargetStatsHook']
