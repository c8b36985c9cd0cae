"""The hook implementations of the Shure plugin: a table of contents for the plugin."""
