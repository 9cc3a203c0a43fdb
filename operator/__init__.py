"""kingest's control path: the kopf operator that turns `Ingestion` resources into Jobs.

Written in kopf's model: `handlers` holds the kopf handlers (startup/cleanup, the Ingestions'
events); the state they share (`reconciler`, the Jobs' and Pods' `store`) is built by the
startup handler and kept in kopf's `memo`, and one event loop runs it; the decisions are pure
functions (`reconcile.plan`, `schedule`, `status`, `job`). See `operator/README.md`.
"""
