"""RKE2: nodes that install Kubernetes themselves from cloud-init, beside ``rke/`` (RKE v1).

Both engines consume the same ``ClusterNode``s and give the same outputs (a secret
kubeconfig, the cluster's readiness as a resource to depend on, the node table). Here
``config_yaml`` writes each node's ``/etc/rancher/rke2/config.yaml``, ``join`` decides
which server initializes and which one everyone else joins, ``manifests`` holds the
HelmChartConfigs, ``upgrade`` the system-upgrade-controller and its Plans, ``scripts``
the shell run on nodes and servers, and ``component`` the Pulumi wiring.
"""
