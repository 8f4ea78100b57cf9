"""ZeroTier: identities, the Central API client and dynamic resources."""
