"""Tabular data: tables with schemas, the mode-specific transformer, the condition sampler and the SDMetrics-style quality metrics."""
