"""The official Kubernetes Python client reads a pod's log and deletes the pod, at a node of a
Weeble cluster that asks for a token over TLS and does not run the pod.

Run by tests/kubectl.rs with a kubeconfig (`weeble config view` with `--token` and
`--certificate-authority`) and the pod's name. Prints one JSON object of what it saw; the Rust
test asserts on it. Before Weeble forwarded these to the pod's node, the node asked answered
with a redirect, and the client (urllib3) dropped its token on the way to the other host: 401.
"""

import json
import sys

from kubernetes import client, config

kubeconfig, name = sys.argv[1:3]
core = client.CoreV1Api(config.new_client_from_config(config_file=kubeconfig))
seen = {}
seen["log"] = core.read_namespaced_pod_log(name, "default", tail_lines=5)
seen["uid"] = core.read_namespaced_pod(name, "default").metadata.uid
deleted = core.delete_namespaced_pod(name, "default")
seen["deleted"] = deleted.metadata.name
print(json.dumps(seen))
