"""multicloud components: pure document builders and thin Pulumi components."""
