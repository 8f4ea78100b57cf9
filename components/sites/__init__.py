"""Sites: one component per cloud kind, all producing the same ``ClusterNode``s."""
