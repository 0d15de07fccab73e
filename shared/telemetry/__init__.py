"""Telemetry: OpenTelemetry to Azure Monitor (set-up, metrics) and the catalogue of names operators query."""
