"""Hermetic tests: an empty tiktoken cache, so every machine resolves the same encodings."""

import os
import tempfile

os.environ["TIKTOKEN_CACHE_DIR"] = tempfile.mkdtemp(prefix="cachediag-tiktoken-")
