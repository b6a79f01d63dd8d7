"""The supervisor: owns the rings and the worker processes, and keeps them running."""
