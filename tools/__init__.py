"""Repository tools: scripts run from a checkout, never imported by the installed package."""
