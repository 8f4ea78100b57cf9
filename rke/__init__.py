"""RKE: cluster.yml from the nodes, and the runner that executes `rke up`."""
