"""Leader election: the pure decision, the Lease it writes, the CLI switch and the chart's Role."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import yaml

from kingest.operator import rbac
from kingest.operator.leader import Action, LeaseRecord, decide, lease_body
from kingest.operator.main import _parser
from tests.platform.helm import render

CHART = Path(__file__).resolve().parents[2] / "charts" / "kingest"
NOW = dt.datetime(2026, 11, 25, 9, 0, 0, tzinfo=dt.UTC)
ME, OTHER = "operator-0", "operator-1"


def held_by(holder: str | None, renewed_s_ago: float, duration_s: int = 15) -> LeaseRecord:
    return LeaseRecord(holder, NOW - dt.timedelta(seconds=renewed_s_ago), duration_s, 3)


def test_no_lease_is_created() -> None:
    assert decide(None, ME, NOW) is Action.CREATE


def test_our_own_lease_is_renewed_even_when_late() -> None:
    assert decide(held_by(ME, 1), ME, NOW) is Action.RENEW
    assert decide(held_by(ME, 100), ME, NOW) is Action.RENEW


def test_a_live_lease_of_another_replica_means_standby() -> None:
    assert decide(held_by(OTHER, 14.9), ME, NOW) is Action.STANDBY


def test_an_expired_lease_of_another_replica_is_taken_over() -> None:
    assert decide(held_by(OTHER, 15), ME, NOW) is Action.ACQUIRE
    assert decide(held_by(OTHER, 3, duration_s=2), ME, NOW) is Action.ACQUIRE


@pytest.mark.parametrize(
    "record",
    [
        LeaseRecord(None, None, None),
        LeaseRecord("", NOW, 15),  # released on a graceful shutdown
        LeaseRecord(OTHER, None, 15),
        LeaseRecord(OTHER, NOW, None),
    ],
)
def test_a_lease_nobody_holds_is_acquired(record: LeaseRecord) -> None:
    assert decide(record, ME, NOW) is Action.ACQUIRE


def test_taking_over_counts_a_transition_and_sets_acquire_time() -> None:
    spec = lease_body("kingest", ME, NOW, 15, held_by(OTHER, 20))["spec"]
    assert spec == {
        "holderIdentity": ME,
        "leaseDurationSeconds": 15,
        "renewTime": "2026-11-25T09:00:00.000000Z",
        "acquireTime": "2026-11-25T09:00:00.000000Z",
        "leaseTransitions": 4,
    }


def test_renewing_keeps_acquire_time_and_transitions() -> None:
    spec = lease_body("kingest", ME, NOW, 15, held_by(ME, 5))["spec"]
    assert "acquireTime" not in spec
    assert spec["leaseTransitions"] == 3
    assert spec["renewTime"] == "2026-11-25T09:00:00.000000Z"


def test_leader_election_is_on_when_the_chart_sets_its_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("KINGEST_LEADER_ELECTION_LEASE", "POD_NAME", "POD_NAMESPACE"):
        monkeypatch.delenv(name, raising=False)
    assert _parser().parse_args([]).leader_election is False
    monkeypatch.setenv("KINGEST_LEADER_ELECTION_LEASE", "kingest")
    monkeypatch.setenv("KINGEST_LEADER_ELECTION_LEASE_DURATION", "7")
    monkeypatch.setenv("POD_NAME", ME)
    monkeypatch.setenv("POD_NAMESPACE", "kingest-system")
    args = _parser().parse_args([])
    assert (args.leader_election, args.lease, args.lease_duration) == (True, "kingest", 7)
    assert _parser().parse_args(["--no-leader-election"]).leader_election is False


def test_chart_leader_election_rules_file_is_what_the_operator_declares() -> None:
    declared = yaml.safe_load((CHART / "files" / "leader-election-rules.yaml").read_text())
    assert declared == rbac.leader_election_rules(), (
        "the chart's Lease rules drifted from kingest.operator.rbac; regenerate them with\n"
        ".venv/bin/python -c 'from kingest.operator import rbac; "
        'print(rbac.LEADER_ELECTION_RULES_YAML, end="")\' '
        "> charts/kingest/files/leader-election-rules.yaml"
    )


@pytest.mark.parametrize("watch", [[], ["apps"]])
def test_chart_grants_leases_only_in_the_release_namespace(watch: list[str]) -> None:
    objects = render(CHART, {"watchNamespaces": watch}, name="kingest", namespace="kingest-system")
    lease_roles = [
        o
        for o in objects
        if o["kind"] in ("Role", "ClusterRole")
        and any("leases" in r["resources"] for r in o["rules"])
    ]
    assert [(o["kind"], o["metadata"]["namespace"]) for o in lease_roles] == [
        ("Role", "kingest-system")
    ]
    assert lease_roles[0]["rules"] == rbac.leader_election_rules()
    bindings = [
        o
        for o in objects
        if o["kind"] == "RoleBinding" and o["roleRef"]["name"] == lease_roles[0]["metadata"]["name"]
    ]
    assert len(bindings) == 1 and bindings[0]["metadata"]["namespace"] == "kingest-system"
