"""The whole system on one machine: `ganworks up`, `ganworks demo`, `ganworks runs`."""
