"""A minimal third-party wmhub plugin (see docs/plugins.md)."""
