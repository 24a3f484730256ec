"""The foundation every layer may use: the exception hierarchy, YAML reading, atomic file
writes and hashing. Imports nothing else from the package."""
