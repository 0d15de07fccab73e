"""The operator's sync configuration (`model`) and, later, the engine that applies it."""
