"""eie.common: what every layer shares and nothing else: the error type, atomic file writes and
the project-wide constants. It imports nothing of the project."""
