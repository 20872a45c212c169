"""Reader simulators: one model per dialect behind a pseudo-terminal (DESIGN 2.1).

`SimulatedReader` runs a model in a thread for tests; `python -m simulators.reader`
runs it from a shell. A dialect plugs in with a model class in `runner.MODELS`.
"""

from simulators.reader.runner import MODELS, SimulatedReader

__all__ = ["MODELS", "SimulatedReader"]
