"""wmhub: watch and control wireless microphone systems, publish their live state to MQTT.

Plugins import what they need from here: the ``hookimpl`` marker, the model and the driver helpers.
"""

import pluggy

__version__ = "26.12.3"

hookimpl = pluggy.HookimplMarker("wmhub")

__all__ = ["__version__", "hookimpl"]
