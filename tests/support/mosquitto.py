"""Moved to simulators/mosquitto.py (the demo needs it, and an installed package ships no tests/)."""
from simulators.mosquitto import Mosquitto, find_mosquitto, free_port  # noqa: F401
