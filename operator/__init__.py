"""kingest's control path: the kopf operator that turns `Ingestion` resources into Jobs.

Written in kopf's model: `handlers` holds the kopf handlers (startup/cleanup, the Ingestions'
events, indexes and events of their Jobs and Pods); the state they share (`reconciler`) is
built by the startup handler and kept in kopf's `memo`; the decisions are pure functions
(`reconcile.plan`, `schedule`, `status`, `job`). See `operator/README.md`.
"""
