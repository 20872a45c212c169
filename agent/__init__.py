"""laneagent: the booth daemon of a commercial-truck lane (see README.md)."""

__version__ = "0.1.0"
