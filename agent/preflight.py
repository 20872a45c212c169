"""Checks the daemon makes before it opens anything: files the config names must be usable.

A key or password file that others can read is refused (the booth holds travel data
and the lane's credentials); so is a verify_key that is not an Ed25519 public key.
Every problem is one line naming the key and the file, like the config's own errors.
"""

from __future__ import annotations

import os
import stat

from agent.config import Config
from agent.sync.cose import load_public_key


def problems(cfg: Config) -> list[str]:
    out: list[str] = []
    for i, b in enumerate(cfg.backends):
        where = f"backends[{i}]"
        secrets = [("password_file", b.password_file)]
        files = [("verify_key", b.verify_key)]
        if b.tls:
            files += [("tls.ca", b.tls.ca), ("tls.cert", b.tls.cert)]
            secrets.append(("tls.key", b.tls.key))
        for key, path in files + secrets:
            if path and not os.access(path, os.R_OK):
                out.append(f"{where}.{key}: cannot read {path} ({'missing' if not os.path.exists(path) else 'permission denied'})")
        for key, path in secrets:
            if path and os.path.exists(path):
                mode = stat.S_IMODE(os.stat(path).st_mode)
                if mode & 0o077:
                    out.append(f"{where}.{key}: {path} is readable by others (mode {mode:o}); "
                               f"run: chmod 600 {path}")
        if b.verify_key and os.access(b.verify_key, os.R_OK):
            try:
                load_public_key(b.verify_key)
            except ValueError as e:
                out.append(f"{where}.verify_key: {e}")
    return out
