//! Manifest parsing and validation through the public API, on the talk's manifest, a
//! full-featured one, and a table of broken ones, each of which must reject the whole file.

use weeble_crdt::*;

const TALK: &str = include_str!("../../examples/nginx.yaml");

#[test]
fn the_talk_manifest_applies_as_written_with_warnings_for_the_defaults() {
    let parsed = parse_manifests(TALK).expect("the talk's manifest is valid");
    let [Object::Deployment(d), Object::Service(s)] = &parsed.objects[..] else {
        panic!("expected a Deployment then a Service: {:?}", parsed.objects)
    };
    assert_eq!(d.meta.key(), ObjectKey::new("default", "nginx"));
    assert_eq!(d.spec.replicas, 3);
    assert_eq!(
        d.spec.selector,
        Labels::from([("app".into(), "nginx".into())])
    );
    assert_eq!(d.spec.template.containers[0].ports[0].container_port, 80);
    assert_eq!(s.spec.ports[0].target_port, TargetPort::Number(80));
    assert_eq!(s.spec.selector["app"], "nginx");
    let warnings: Vec<String> = parsed.warnings.iter().map(|w| w.to_string()).collect();
    assert_eq!(
        warnings,
        [
            "document 1 (Deployment \"nginx\"): apiVersion: missing: defaulted to apps/v1",
            "document 1 (Deployment \"nginx\"): spec.selector: missing: defaulted to the template's labels",
            "document 2 (Service \"nginx-service\"): apiVersion: missing: defaulted to v1",
        ]
    );
}

#[test]
fn a_full_manifest_keeps_every_supported_field() {
    let text = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
  labels: {tier: front}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  strategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 1, maxUnavailable: "50%"}}
  template:
    metadata: {labels: {app: web, track: stable}}
    spec:
      nodeSelector: {disk: ssd}
      restartPolicy: OnFailure
      containers:
      - name: web
        image: weeble-demo:latest
        command: ["/serve"]
        args: ["--port", "8080"]
        workingDir: /srv
        env: [{name: MESSAGE, value: hello}]
        ports: [{name: http, containerPort: 8080, protocol: TCP}]
        resources:
          requests: {cpu: 250m, memory: 64Mi}
          limits: {cpu: 1, memory: 128Mi}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
"#;
    let parsed = parse_manifests(text).expect("valid");
    assert!(parsed.warnings.is_empty(), "{:?}", parsed.warnings);
    let Object::Deployment(d) = &parsed.objects[0] else {
        panic!()
    };
    assert_eq!(d.meta.key().to_string(), "shop/web");
    assert_eq!(d.meta.labels["tier"], "front");
    assert_eq!(
        d.spec.strategy,
        Strategy::RollingUpdate {
            max_surge: IntOrPercent::Count(1),
            max_unavailable: IntOrPercent::Percent(50)
        }
    );
    let t = &d.spec.template;
    assert_eq!(t.node_selector["disk"], "ssd");
    assert_eq!(t.restart_policy, RestartPolicy::OnFailure);
    let c = &t.containers[0];
    assert_eq!(
        (c.command.as_slice(), c.args.len()),
        (&["/serve".to_string()][..], 2)
    );
    assert_eq!(c.working_dir.as_deref(), Some("/srv"));
    assert_eq!(
        c.env,
        [EnvVar {
            name: "MESSAGE".into(),
            value: "hello".into()
        }]
    );
    assert_eq!(c.ports[0].name.as_deref(), Some("http"));
    assert_eq!(
        c.resources.requests,
        ResourceAmounts {
            cpu_millis: 250,
            memory_bytes: 64 << 20
        }
    );
    assert_eq!(
        c.resources.limits,
        ResourceAmounts {
            cpu_millis: 1000,
            memory_bytes: 128 << 20
        }
    );
    assert_eq!(t.requests().cpu_millis, 250);
    let Object::Service(s) = &parsed.objects[1] else {
        panic!()
    };
    assert_eq!(s.spec.ports[0].target_port, TargetPort::Name("http".into()));
}

#[test]
fn ignored_fields_warn_and_unsupported_fields_fail() {
    let with = |extra_meta: &str, extra_container: &str, extra_pod: &str| {
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: a\n{extra_meta}spec:\n  \
             selector: {{matchLabels: {{app: a}}}}\n  template:\n    metadata: {{labels: {{app: a}}}}\n    \
             spec:\n{extra_pod}      containers:\n      - name: a\n        image: i\n{extra_container}"
        )
    };
    let ok = parse_manifests(&with(
        "  annotations: {note: x}\n",
        "        imagePullPolicy: Always\n",
        "",
    ))
    .expect("ignored fields only warn");
    let paths: Vec<&str> = ok.warnings.iter().map(|w| w.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "metadata.annotations",
            "spec.template.spec.containers[0].imagePullPolicy"
        ]
    );
    let err = parse_manifests(&with(
        "",
        "",
        "      volumes: [{name: v, emptyDir: {}}]\n      affinity: {}\n",
    ))
    .unwrap_err();
    let paths: Vec<&str> = err.errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        ["spec.template.spec.volumes", "spec.template.spec.affinity"]
    );
    assert!(err.to_string().contains("not supported"), "{err}");
}

/// Each broken manifest must be rejected with a message containing every expected fragment.
#[test]
fn broken_manifests_are_rejected_with_document_path_and_line() {
    let deployment = |spec: &str| {
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web}}\nspec:\n{spec}  template:\n    \
             metadata: {{labels: {{app: web}}}}\n    spec:\n      containers:\n      - {{name: web, image: i}}\n"
        )
    };
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        (
            "unknown kind",
            "kind: Pod\nmetadata: {name: p}\n".into(),
            vec!["document 1", "kind", "unknown kind \"Pod\""],
        ),
        (
            "misspelt field",
            deployment("  replica: 3\n"),
            vec!["spec", "unknown field `replica`", "line 5"],
        ),
        (
            "mistyped field",
            deployment("  replicas: three\n"),
            vec!["spec.replicas", "invalid type", "line 5"],
        ),
        (
            "negative replicas",
            deployment("  replicas: -1\n"),
            vec!["spec.replicas", "between 0 and"],
        ),
        (
            "bad name",
            TALK.replace("name: nginx}", "name: Nginx_1}"),
            vec!["document 1", "metadata.name", "invalid name \"Nginx_1\""],
        ),
        (
            "duplicate container names",
            TALK.replace(
                "- {name: nginx, image: nginx, ports: [{containerPort: 80}]}",
                "- {name: nginx, image: nginx}\n      - {name: nginx, image: nginx}",
            ),
            vec![
                "spec.template.spec.containers[1].name",
                "duplicate container name",
            ],
        ),
        (
            "port out of range",
            TALK.replace("containerPort: 80", "containerPort: 70000"),
            vec![
                "spec.template.spec.containers[0].ports[0].containerPort",
                "out of range",
            ],
        ),
        (
            "service port out of range in the second document",
            TALK.replace("port: 80, targetPort", "port: 0, targetPort"),
            vec![
                "document 2 (Service \"nginx-service\")",
                "spec.ports[0].port",
                "out of range",
            ],
        ),
        (
            "yaml syntax",
            "kind: Deployment\nmetadata: {name: [}\n".into(),
            vec!["document 1", "invalid YAML", "line 2"],
        ),
        (
            "not a mapping",
            "- just\n- a list\n".into(),
            vec!["document 1", "not a Kubernetes object"],
        ),
        (
            "wrong apiVersion",
            TALK.replace(
                "kind: Deployment",
                "apiVersion: extensions/v1beta1\nkind: Deployment",
            ),
            vec!["apiVersion", "apps/v1"],
        ),
        (
            "selector does not match",
            deployment("  selector: {matchLabels: {app: other}}\n"),
            vec!["spec.selector.matchLabels", "does not match"],
        ),
        (
            "empty file",
            "---\n---\n".into(),
            vec!["file", "no Deployment or Service"],
        ),
        (
            "same object twice",
            format!("{TALK}\n---\n{}", TALK.split("---").next().unwrap()),
            vec!["document 3", "also defined by document 1"],
        ),
        (
            "bad quantity",
            deployment("").replace(
                "image: i}",
                "image: i, resources: {requests: {memory: lots}}}",
            ),
            vec!["resources.requests.memory", "not a quantity"],
        ),
    ];
    for (name, text, fragments) in cases {
        let err = match parse_manifests(&text) {
            Ok(parsed) => panic!("{name}: accepted: {:?}", parsed.objects),
            Err(err) => err.to_string(),
        };
        for fragment in fragments {
            assert!(
                err.contains(fragment),
                "{name}: {fragment:?} not in:\n{err}"
            );
        }
    }
}

#[test]
fn probes_are_read_with_kubernetes_defaults_and_their_mistakes_are_named() {
    let with = |probes: &str| {
        format!(
            "kind: Deployment\nmetadata: {{name: web}}\nspec:\n  template:\n    metadata: {{labels: {{app: web}}}}\n    \
             spec:\n      containers:\n      - name: web\n        image: i\n        ports: [{{containerPort: 80, name: http}}]\n{probes}"
        )
    };
    let parsed = parse_manifests(&with(
        "        readinessProbe: {httpGet: {path: /ready, port: http}, periodSeconds: 1}\n        \
         livenessProbe: {tcpSocket: {port: 80}, initialDelaySeconds: 2, failureThreshold: 5}\n",
    ))
    .expect("valid probes");
    let Object::Deployment(d) = &parsed.objects[0] else {
        panic!()
    };
    let c = &d.spec.template.containers[0];
    let ready = c.readiness_probe.as_ref().unwrap();
    assert_eq!(
        ready.action,
        ProbeAction::HttpGet {
            path: "/ready".into(),
            port: TargetPort::Name("http".into())
        }
    );
    assert_eq!(
        (
            ready.period_seconds,
            ready.timeout_seconds,
            ready.failure_threshold
        ),
        (1, 1, 3)
    );
    let live = c.liveness_probe.as_ref().unwrap();
    assert_eq!(
        live.action,
        ProbeAction::TcpSocket {
            port: TargetPort::Number(80)
        }
    );
    assert_eq!(
        (
            live.initial_delay_seconds,
            live.period_seconds,
            live.failure_threshold
        ),
        (2, 10, 5)
    );

    let cases = [
        (
            "        readinessProbe: {exec: {command: [x]}, tcpSocket: {port: 80}}\n",
            "readinessProbe",
            "exactly one",
        ),
        (
            "        readinessProbe: {tcpSocket: {port: 8080}}\n",
            "readinessProbe.tcpSocket.port",
            "not among the container's ports",
        ),
        (
            "        livenessProbe: {httpGet: {port: 80, scheme: HTTPS}}\n",
            "livenessProbe.httpGet.scheme",
            "only HTTP",
        ),
        (
            "        livenessProbe: {exec: {command: [x]}, successThreshold: 2}\n",
            "livenessProbe.successThreshold",
            "must be 1",
        ),
        (
            "        readinessProbe: {exec: {command: []}}\n",
            "readinessProbe.exec.command",
            "required",
        ),
        (
            "        readinessProbe: {exec: {command: [x]}, periodSeconds: 0}\n",
            "readinessProbe.periodSeconds",
            "at least 1",
        ),
    ];
    for (probe, path, message) in cases {
        let err = parse_manifests(&with(probe)).unwrap_err();
        let found: Vec<String> = err
            .errors
            .iter()
            .map(|e| format!("{}: {}", e.path, e.message))
            .collect();
        assert!(
            err.errors.iter().any(
                |e| e.path == format!("spec.template.spec.containers[0].{path}")
                    && e.message.contains(message)
            ),
            "{probe}: {found:?}"
        );
    }
}
