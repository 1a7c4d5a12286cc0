"""The cachediag command line."""
