"""Outputs for other tools' data models (SpatialData); each needs its extra, installed in its own venv."""
