"""The official Kubernetes Python client against three peers of a Weeble cluster.

Run by tests/kubectl.rs with the kubeconfigs of three nodes (`weeble config view`), each
call at another peer: create, read, list with a selector, patch, scale, watch, logs, delete.
Prints one JSON object of what it saw; the Rust test asserts on it.
"""

import json
import sys
import time
import urllib.request

from kubernetes import client, config, watch

configs = sys.argv[1:4]
apis = [config.new_client_from_config(config_file=c) for c in configs]
apps = [client.AppsV1Api(a) for a in apis]
core = [client.CoreV1Api(a) for a in apis]
seen = {}

deployment = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "py", "labels": {"made-by": "python"}},
    "spec": {
        "replicas": 1,
        "selector": {"matchLabels": {"app": "py"}},
        "template": {
            "metadata": {"labels": {"app": "py"}},
            "spec": {
                "containers": [
                    {
                        "name": "web",
                        "image": "weeble-demo:v1",
                        "ports": [{"containerPort": 80}],
                    }
                ]
            },
        },
    },
}
created = apps[0].create_namespaced_deployment("default", deployment)
seen["created"] = created.metadata.name
seen["uid"] = created.metadata.uid

# A typed read and a list at other peers: every field the client checks is there.
read = apps[1].read_namespaced_deployment("py", "default")
seen["read_strategy"] = read.spec.strategy.type
listed = apps[2].list_namespaced_deployment("default", label_selector="made-by=python")
seen["listed"] = [d.metadata.name for d in listed.items]
none = apps[2].list_namespaced_deployment("default", label_selector="made-by=nobody")
seen["listed_none"] = len(none.items)

patched = apps[1].patch_namespaced_deployment(
    "py", "default", {"metadata": {"labels": {"patched": "yes"}}}
)
seen["patched"] = patched.metadata.labels.get("patched")
scale = apps[2].patch_namespaced_deployment_scale("py", "default", {"spec": {"replicas": 2}})
seen["scaled"] = scale.spec.replicas

# Watch the pods until both run ready, from the list's version.
pods = core[0].list_namespaced_pod("default", label_selector="app=py")
running = {}
stream = watch.Watch().stream(
    core[0].list_namespaced_pod,
    "default",
    label_selector="app=py",
    resource_version=pods.metadata.resource_version,
    timeout_seconds=90,
)
for p in pods.items:
    running[p.metadata.name] = p.status.phase == "Running" and all(
        c.ready for c in (p.status.container_statuses or [])
    )
if not (len(running) == 2 and all(running.values())):
    for event in stream:
        p = event["object"]
        statuses = p.status.container_statuses or []
        running[p.metadata.name] = (
            p.status.phase == "Running" and bool(statuses) and all(c.ready for c in statuses)
        )
        if len([r for r in running.values() if r]) == 2:
            break
seen["watched_running"] = sorted(n for n, r in running.items() if r)

# Another peer hears the pods' reports a moment later.
for _ in range(40):
    pods = core[1].list_namespaced_pod("default", label_selector="app=py")
    if len(pods.items) == 2 and all(p.status.pod_ip for p in pods.items):
        break
    time.sleep(0.5)
seen["pod_ips"] = [p.status.pod_ip for p in pods.items]
name = pods.items[0].metadata.name
# Where Weeble published the pod's port: its own field, which the typed model drops.
raw = core[1].list_namespaced_pod("default", label_selector="app=py", _preload_content=False)
first = next(p for p in json.loads(raw.data)["items"] if p["metadata"]["name"] == name)
ip, port = first["status"]["podIP"], first["status"]["ports"][0]["hostPort"]
urllib.request.urlopen(f"http://{ip}:{port}/from-python", timeout=5).read()
time.sleep(0.5)
seen["log"] = core[2].read_namespaced_pod_log(name, "default", tail_lines=5)

# An orphaning delete is refused (what a deployment runs goes with it), deleting nothing.
try:
    apps[1].delete_namespaced_deployment("py", "default", propagation_policy="Orphan")
    seen["orphan"] = "deleted"
except client.exceptions.ApiException as e:
    seen["orphan"] = e.status
status = apps[0].delete_namespaced_deployment("py", "default")
seen["deleted"] = status.status
print(json.dumps(seen))
