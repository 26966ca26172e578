"""Finds the processes a command left behind: every process that inherited a marker in its environment.

The helpers live in orchestration/processes.py, where the chaos soak (benchmarks/soak.py) uses them too.
"""

from orchestration.processes import MARK, marked_env, processes_marked

__all__ = ["MARK", "marked_env", "processes_marked"]
