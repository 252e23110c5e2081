"""Platform connectors: one folder each, behind the small interface in `connectors/base.py`."""
