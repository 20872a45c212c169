"""TEMPORARY (replaced by the store branch)."""
import json
import os


class StatusFile:
    def __init__(self, path):
        self.path = path

    def write(self, doc):
        tmp = f"{self.path}.tmp"
        with open(tmp, "w") as f:
            json.dump(doc, f, default=str)
        os.replace(tmp, self.path)
