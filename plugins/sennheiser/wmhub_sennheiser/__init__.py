"""wmhub plugin for Sennheiser receivers."""

__version__ = "26.12.3"
