"""The operator's RBAC: the chart ships these rules, and the tests run under them.

No access to Secrets: Jobs reference them by name and the kubelet resolves them.
"""

from __future__ import annotations

from typing import Any

import yaml

from kingest.operator.spec import GROUP, PLURAL

CLUSTER_ROLE_RULES_YAML = f"""\
# kopf observes which resources and namespaces exist (it waits ~1 min and then stops
# noticing changes without these).
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["list", "watch"]
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["list", "watch"]
- apiGroups: ["{GROUP}"]
  resources: ["{PLURAL}"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["{GROUP}"]
  resources: ["{PLURAL}/status"]
  verbs: ["get", "patch", "update"]
# ownerReferences with blockOwnerDeletion need this where OwnerReferencesPermissionEnforcement
# is on (e.g. OpenShift).
- apiGroups: ["{GROUP}"]
  resources: ["{PLURAL}/finalizers"]
  verbs: ["update"]
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create", "delete"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["", "events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
"""


# Leader election between replicas: one Lease in the operator's own namespace (a Role there,
# never a cluster-wide right on every namespace's Leases).
LEADER_ELECTION_RULES_YAML = """\
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  verbs: ["get", "create", "update"]
# Each replica labels its own Pod leader / standby: the webhook Service selects the leader.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["patch"]
"""


def leader_election_rules() -> list[dict[str, Any]]:
    """The rules of the Role in the operator's namespace that its Lease election needs (the
    Lease first, then the label on the replica's own Pod)."""
    return yaml.safe_load(LEADER_ELECTION_RULES_YAML)


def cluster_role_rules() -> list[dict[str, Any]]:
    """The ClusterRole's `rules`."""
    return yaml.safe_load(CLUSTER_ROLE_RULES_YAML)


def cluster_role(name: str = "kingest-operator") -> dict[str, Any]:
    """The operator's ClusterRole."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": name},
        "rules": cluster_role_rules(),
    }
