"""Tests that drive the real Pulumi CLI (`make tools` builds it; docs/testing.md)."""
