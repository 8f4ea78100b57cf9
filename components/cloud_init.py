"""Moved to ``components/boot/`` (issue 20); this keeps the one name
``components/config/ranges.py`` still imports from here until it imports it from there."""

from components.boot.metadata_guard import METADATA_ADDRESS

__all__ = ["METADATA_ADDRESS"]
