"""The platform's control plane with OwnerReferencesPermissionEnforcement admission on.

Clusters such as OpenShift enable it: setting `blockOwnerDeletion` in an ownerReference then
needs `update` on the owner's `finalizers` subresource, so an operator's RBAC can only be
proven minimal *and* sufficient where it is on. Additive to `tests.platform.kube`.
"""

from __future__ import annotations

from collections.abc import Sequence

from tests.platform.kube import ControlPlane
from tests.platform.processes import ManagedProcess

ADMISSION = "--enable-admission-plugins=OwnerReferencesPermissionEnforcement"


class StrictControlPlane(ControlPlane):
    """A `ControlPlane` whose API server enforces permissions on ownerReferences."""

    def _spawn(self, name: str, argv: Sequence[str]) -> ManagedProcess:
        if name == "kube-apiserver":
            argv = [*argv, ADMISSION]
        return super()._spawn(name, list(argv))
