"""`make demo`: kingest's main job end to end on the local platform.

Placeholder until the runner and operator land: says what the demo will do.
"""

STEPS = """\
make demo will:
  1. start the local platform: etcd + kube-apiserver + kube-controller-manager, the kubelet
     harness and an S3-compatible server, all on loopback;
  2. install the Ingestion CRD and run the kingest operator;
  3. put the seed's students/students_details.csv into a bucket;
  4. apply examples/ for both seed examples (S3 -> DuckDB, DuckDB -> S3) and wait for Succeeded;
  5. show `kubectl get ingestions`, the loaded DuckDB rows and the S3 object tree,
     and leave the platform running with an `export KUBECONFIG=...` line until Ctrl-C.
"""


def main() -> None:
    print(STEPS)


if __name__ == "__main__":
    main()
