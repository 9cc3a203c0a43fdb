"""kingest's data path: URIs, sources, destinations and the `kingest ingest` command.

Nothing here imports Kubernetes: the runner needs no cluster credentials at all.
"""
