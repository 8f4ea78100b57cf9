"""The overlay: ZeroTier network, identities and members, and the address plan."""
