"""wmhub plugin for Shure receivers."""

__version__ = "26.12.3"
