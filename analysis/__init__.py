"""The pure core: request rendering, tokens, fingerprints, the differ, causes, provider rules."""
