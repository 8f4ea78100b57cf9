"""`make roll`: replace the nodes behind the code one at a time (docs/operations.md)."""
