"""kingest's control path: the kopf operator that turns `Ingestion` resources into Jobs."""
