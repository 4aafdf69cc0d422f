"""The frontend: its desired files from config, registry and images; services; every change of the registry."""
