"""`python -m simulators.demo`: a whole simulated lane, end to end, that leaves nothing running.

lane.py orchestrates (two mosquitto brokers, the two back ends in process, the reader
simulator and the agent as process groups), agentconfig.py writes the agent's config
from the example template, processes.py owns the child processes, tally.py judges
what arrived. `run(DemoOptions(...))` is the entry point for tests.
"""

from simulators.demo.lane import DemoOptions, run

__all__ = ["DemoOptions", "run"]
