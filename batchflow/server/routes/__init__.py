"""HTTP routes of ``batchflow serve``."""
