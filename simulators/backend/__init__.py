"""A country's back end, simulated: it fills a lane's cache and receives and verifies its crossings.

`Backend` (client.py) is the MQTT side; `ChainVerifier` (verify.py) re-checks digests,
hashes, the `prev_hash` chain, seq gaps and duplicates independently of the agent's
code; parts.py cuts cache messages to the agent's size bound (snapshots in parts) and
keeps the history a resync is answered from; render.py turns what arrives into one
readable line each. Command line:
`python -m simulators.backend --help`.
"""

from simulators.backend.client import Backend
from simulators.backend.render import Received, crossing_line, describe
from simulators.backend.verify import SECTIONS, ZERO_HASH, ChainVerifier, Verdict, crossing_hash, section_digest

__all__ = ["Backend", "ChainVerifier", "Received", "SECTIONS", "Verdict", "ZERO_HASH", "crossing_hash",
           "crossing_line", "describe", "section_digest"]
