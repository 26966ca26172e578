"""Set-up hooks that Ray runs in every worker process of the local cluster ganworks starts (kept free of heavy imports:
every worker, the train controller and Ray's helper actors included, runs them when it starts)."""

from __future__ import annotations

import logging
import os

# Ray Train's placement-group cleaner asks the State API every second whether the train controller is alive. On the
# local cluster this fails in one of two ways, each seen in a --no-progress log:
# - with other Ray instances on the machine, the ask cannot tell which cluster is its own and the cleaner's thread
#   dies with a "Found multiple active Ray instances" traceback;
# - otherwise the State API (served by the dashboard, which the local cluster does not start) is unavailable, and
#   the cleaner logs a warning saying so, about once a second for the whole run.
# What the cleaner is for, removing the workers' placement group when the controller dies, does not arise on the
# local cluster: it ends with the `ganworks` process that started it.
CLEANER_LOGGER = "ray.train.v2._internal.execution.controller.placement_group_cleaner"


def quiet_without_dashboard() -> None:
    """worker_process_setup_hook: a worker's own cluster is the one it finds by address, and only the
    placement-group cleaner's errors, not its warnings, reach the log."""
    import ray

    os.environ.setdefault("RAY_ADDRESS", ray.get_runtime_context().gcs_address)
    logging.getLogger(CLEANER_LOGGER).setLevel(logging.ERROR)
