"""kingest's test platform: the real things a user's cluster runs, started on loopback.

- `s3`: a moto S3 server over HTTP (SigV4), with faults injectable at the HTTP layer;
- `kube`: etcd + kube-apiserver + kube-controller-manager with RBAC and token auth;
- `kubelet`: runs the Pods of Jobs as local processes and writes their status;
- `helm`: real Go Helm through helm-python-sdk.

`make demo` uses the same pieces, so nothing here imports pytest.
"""
