"""The hook implementations of the Sennheiser plugin: a table of contents for the plugin."""
