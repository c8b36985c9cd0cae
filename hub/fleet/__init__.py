"""One board for many hubs, from MQTT alone: ``wmhub fleet`` (docs/scaling.md, "One board for the whole venue")."""
