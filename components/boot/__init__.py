"""A node's boot document (cloud-init user-data), composed of parts.

``document`` puts the parts together; each concern owns its part: ``apt`` (the bootstrap's
prologue and its apt calls), ``metadata_guard``, ``host_key``, ``overlay`` (ZeroTier) and
the engine's (``EnginePart``: RKE's in ``rke/boot.py``, RKE2's in ``rke2/boot.py``). The
scripts and units are files in ``files/``, loaded by ``assets``.
"""
