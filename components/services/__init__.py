"""What makes the cluster reachable and useful: the Cloudflare entrypoint and services."""
