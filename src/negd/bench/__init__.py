"""``negd bench``: throughput of negd's neuroevolution against the usual implementations.

Workloads are the paper's networks (Whitelam, Selin, Park & Tamblyn, Nat. Commun. 12, 6317
(2021)); see :mod:`negd.bench.workloads`, :mod:`negd.bench.peers` and :mod:`negd.bench.cli`.
"""

from negd.bench.cli import main

__all__ = ["main"]
