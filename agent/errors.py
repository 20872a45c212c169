"""The few exception types of laneagent; each carries the object it is about."""


class LaneAgentError(Exception):
    """Base of our own errors."""


class ConfigError(LaneAgentError):
    """The configuration file is unusable; `problems` holds one line per fault."""

    def __init__(self, path: str, problems: list[str]):
        self.path = path
        self.problems = problems
        super().__init__("\n".join(f"{path}: {p}" for p in problems))


class ReaderError(LaneAgentError):
    """A reader did not answer as its dialect says it must."""

    def __init__(self, reader: str, message: str):
        self.reader = reader
        super().__init__(f"reader {reader}: {message}")


class StoreError(LaneAgentError):
    """The database cannot be opened or written."""


class DownlinkRejected(LaneAgentError):
    """A message from a back end was refused; `reason` is the counter's name."""

    def __init__(self, reason: str, message: str):
        self.reason = reason
        super().__init__(message)
