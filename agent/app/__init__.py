"""The app: wires the layers below into the daemon (threads, lifecycle, alarms, watchdog,
status file, commands)."""

from agent.app.daemon import Daemon

__all__ = ["Daemon"]
