"""CLI commands, one module each, registered by ``core.cli``."""
