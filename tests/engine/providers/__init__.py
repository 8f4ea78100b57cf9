"""Local stand-ins for the cloud providers' plugins, served over the engine's gRPC contract.

Each of openstack, digitalocean, cloudflare, kubernetes, random and tls runs as
``python -m tests.engine.providers <package>`` behind a ``pulumi-resource-<package>`` launcher
(tests/engine/plugins.py installs them into a test PULUMI_HOME). What a cloud computes comes
from the model the offline render uses (scripts/offline.py ``fake_outputs``/``fake_call``);
which property changes replace a resource comes from reference/force-new.json; all of them
share one fake cloud (``cloud.FakeCloud``) in the directory ``$MULTICLOUD_FAKE_CLOUD_DIR``.
"""
