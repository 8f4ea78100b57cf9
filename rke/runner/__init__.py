"""The program behind the RKE ``pulumi_command.local.Command``: ``python -m rke.runner``.

cluster.yml (without secrets) comes on standard input and the environment
(``contract``); on success stdout carries exactly one JSON object
(``rke.state.encode_result``) and the local copy of the state is removed; on failure
stdout stays empty, the exit code is non-zero and the newest state RKE wrote stays in
the local copy, which the next run starts from. Progress goes to stderr, bounded and
redacted. The modules, in the order a run uses them: ``cli``, ``contract``, ``session``,
``leftovers``, ``starting`` (with ``nodes``), ``run``, ``etcd`` and ``kubectl``. The
protocol: docs/architecture.md; the state rules: docs/recovery.md.
"""
