"""Hermetic tests: an empty tiktoken cache, so every machine resolves the same encodings
(removed when the session ends, so runs leave no directories behind in /tmp)."""

import atexit
import os
import shutil
import tempfile

_CACHE = tempfile.mkdtemp(prefix="cachediag-tiktoken-")
atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)
os.environ["TIKTOKEN_CACHE_DIR"] = _CACHE
