"""CLI commands for people, OAuth through the Launchpad stand-in."""
