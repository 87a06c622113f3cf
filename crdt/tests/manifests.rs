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
        image: weeble-demo:v1
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
    let ok = parse_manifests(&with("  uid: 0f2a\n", "        tty: true\n", ""))
        .expect("ignored fields only warn");
    let paths: Vec<&str> = ok.warnings.iter().map(|w| w.path.as_str()).collect();
    assert_eq!(
        paths,
        ["metadata.uid", "spec.template.spec.containers[0].tty"]
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

#[test]
fn rollout_fields_and_annotations_are_kept_with_kubernetes_defaults_and_rules() {
    let deployment = |spec: &str| {
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: a\n  annotations:\n    \
             weeble.io/rollback-on-failure: \"true\"\nspec:\n{spec}  selector: {{matchLabels: \
             {{app: a}}}}\n  template:\n    metadata:\n      labels: {{app: a}}\n      \
             annotations: {{note: x}}\n    spec:\n      containers:\n      - name: a\n        \
             image: i\n"
        )
    };
    let fields = |spec: &str| {
        let parsed = parse_manifests(&deployment(spec)).expect("valid");
        assert!(parsed.warnings.is_empty(), "{:?}", parsed.warnings);
        let Object::Deployment(d) = &parsed.objects[0] else {
            panic!()
        };
        assert_eq!(d.meta.annotations[ROLLBACK_ON_FAILURE], "true");
        assert_eq!(d.spec.template.annotations["note"], "x");
        let s = &d.spec;
        (
            s.min_ready_seconds,
            s.progress_deadline_seconds,
            s.revision_history_limit,
            s.is_paused(),
        )
    };
    assert_eq!(fields(""), (0, 600, 10, false));
    let set = "  minReadySeconds: 5\n  progressDeadlineSeconds: 30\n  revisionHistoryLimit: 2\n  \
               paused: true\n  strategy:\n    rollingUpdate: {maxSurge: 0, maxUnavailable: 50%}\n";
    assert_eq!(fields(set), (5, 30, 2, true));
    let err = parse_manifests(&deployment(
        "  minReadySeconds: 30\n  progressDeadlineSeconds: 30\n  revisionHistoryLimit: -1\n  \
         strategy:\n    rollingUpdate: {maxSurge: 0%, maxUnavailable: 0}\n",
    ))
    .unwrap_err();
    let paths: Vec<&str> = err.errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "spec.progressDeadlineSeconds",
            "spec.revisionHistoryLimit",
            "spec.strategy.rollingUpdate.maxUnavailable"
        ],
        "{err}"
    );
    let bad_key = deployment("").replace("weeble.io/rollback-on-failure", "-bad");
    let err = parse_manifests(&bad_key).unwrap_err();
    assert_eq!(err.errors[0].path, "metadata.annotations.-bad", "{err}");
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

#[test]
fn a_byte_order_mark_before_the_file_is_ignored() {
    let parsed = parse_manifests(&format!("\u{feff}{TALK}")).expect("kubectl accepts a BOM too");
    assert_eq!(parsed.objects.len(), 2);
}

#[test]
fn the_pull_policy_is_kept_as_given_and_defaults_by_the_images_tag() {
    let container = |replace: &str| {
        let parsed = parse_manifests(&talk_container(replace)).expect("a valid manifest");
        let Object::Deployment(d) = &parsed.objects[0] else {
            panic!("a deployment")
        };
        d.spec.template.containers[0].clone()
    };
    let never = container("image: nginx:1.27\n        imagePullPolicy: Never");
    assert_eq!(never.image_pull_policy, Some(PullPolicy::Never));
    assert_eq!(never.pull_policy(), PullPolicy::Never);
    let default = container("image: nginx:1.27\n        imagePullPolicy: IfNotPresent");
    assert_eq!(
        default.image_pull_policy, None,
        "the default, written back by a client, is no change"
    );
    assert_eq!(default, container("image: nginx:1.27"));
    for (image, default) in [
        ("nginx", PullPolicy::Always),
        ("nginx:latest", PullPolicy::Always),
        ("nginx:1.27", PullPolicy::IfNotPresent),
    ] {
        let c = container(&format!("image: {image}"));
        assert_eq!(
            (c.image_pull_policy, c.pull_policy()),
            (None, default),
            "{image}"
        );
    }
    let errors = errors_of(&talk_container(
        "image: nginx\n        imagePullPolicy: Sometimes",
    ));
    assert!(
        errors[0].contains("spec.template.spec.containers[0].imagePullPolicy")
            && errors[0].contains("use Always, IfNotPresent or Never"),
        "{errors:?}"
    );
}

/// A deployment in block style whose container's `image: nginx` line is `replace`.
fn talk_container(replace: &str) -> String {
    "kind: Deployment
metadata:
  name: nginx
spec:
  replicas: 3
  template:
    metadata:
      labels:
        app: nginx
    spec:
      containers:
      - name: nginx
        image: nginx
"
    .replacen("image: nginx", replace, 1)
}

fn errors_of(text: &str) -> Vec<String> {
    parse_manifests(text)
        .expect_err("the file must be rejected")
        .errors
        .iter()
        .map(Located::to_string)
        .collect()
}

#[test]
fn overlong_fields_are_rejected_with_their_path_and_the_cap() {
    let c = "spec.template.spec.containers[0]";
    let image = "i".repeat(validate::MAX_IMAGE_BYTES + 1);
    let arg = "a".repeat(validate::MAX_ARG_BYTES + 1);
    let value = "v".repeat(validate::MAX_ENV_VALUE_BYTES + 1);
    let name = "N".repeat(validate::MAX_ENV_NAME_BYTES + 1);
    let many: Vec<String> = (0..=validate::MAX_ARGS).map(|i| i.to_string()).collect();
    let cases = [
        (
            format!("image: {image}"),
            format!("{c}.image: too long: 4097 bytes, at most 4096"),
        ),
        (
            format!("image: nginx\n        args: [\"{arg}\"]"),
            format!("{c}.args[0]: too long: 32769 bytes, at most 32768"),
        ),
        (
            format!("image: nginx\n        command: [\"{arg}\"]"),
            format!("{c}.command[0]: too long: 32769 bytes, at most 32768"),
        ),
        (
            format!("image: nginx\n        args: [{}]", many.join(",")),
            format!("{c}.args: too many items: 1025, at most 1024"),
        ),
        (
            format!("image: nginx\n        env: [{{name: A, value: \"{value}\"}}]"),
            format!("{c}.env[0].value: too long: 32769 bytes, at most 32768"),
        ),
        (
            format!("image: nginx\n        env: [{{name: {name}, value: x}}]"),
            format!("{c}.env[0].name: invalid variable name"),
        ),
    ];
    for (replace, expected) in cases {
        let errors = errors_of(&talk_container(&replace));
        assert!(
            errors.iter().any(|e| e.contains(&expected)),
            "expected {expected:?} in {errors:?}"
        );
        assert!(errors.iter().all(|e| e.len() < 400), "{errors:?}");
    }
}

#[test]
fn an_object_over_a_megabyte_is_rejected_whole() {
    // 40 variables of 30 KiB: each is allowed, together they make 1.2 MB.
    let env: Vec<String> = (0..40)
        .map(|i| format!("{{name: V{i}, value: \"{}\"}}", "x".repeat(30 * 1024)))
        .collect();
    let errors = errors_of(&talk_container(&format!(
        "image: nginx\n        env: [{}]",
        env.join(",")
    )));
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with("document 1 (Deployment \"nginx\"): too large: ")
            && errors[0].ends_with("bytes as JSON, at most 1048576"),
        "{errors:?}"
    );
}

#[test]
fn errors_quote_at_most_64_characters_of_a_value() {
    let long = "x".repeat(1 << 20);
    let base = talk_container("image: nginx");
    let cases = [
        base.replacen("name: nginx", &format!("name: {long}"), 1),
        base.replacen("app: nginx", &format!("{long}: nginx"), 1),
        base.replacen("app: nginx", &format!("app: {long}"), 1),
        base.replacen("kind: Deployment", &format!("kind: {long}"), 1),
        base.replacen("replicas: 3", &format!("{long}: 3"), 1),
        base.replacen("replicas: 3", &format!("replicas: {long}"), 1),
        base.replacen(
            "image: nginx",
            &format!("image: nginx\n        {long}: 1"),
            1,
        ),
    ];
    for text in cases {
        let error = parse_manifests(&text).expect_err("rejected").to_string();
        assert!(
            error.len() < 2000,
            "{} bytes: {}",
            error.len(),
            &error[..300]
        );
        // YAML itself refuses keys over 1024 characters, with a message that quotes nothing.
        assert!(
            error.contains(" bytes)") || error.contains("invalid YAML"),
            "{error}"
        );
    }
}

#[test]
fn yaml_aliases_are_refused_before_they_expand() {
    // One anchor of 1,000 values and 20,000 aliases to it: 20 million values if expanded.
    let values = vec!["x"; 1000].join(", ");
    let aliases = vec!["*big"; 20_000].join(", ");
    let bomb = format!(
        "kind: Deployment\nmetadata: {{name: web, labels: {{a: b}}}}\nspec:\n  template:\n    \
         spec:\n      containers:\n      - name: web\n        image: x\n        \
         args: &big [{values}]\n        command: [{aliases}]\n"
    );
    let start = std::time::Instant::now();
    let e = parse_manifests(&bomb).unwrap_err().to_string();
    assert!(e.contains("YAML alias \"big\" is not supported"), "{e}");
    assert!(start.elapsed() < std::time::Duration::from_secs(5));
    // An asterisk or an ampersand that names no anchor is text as before.
    let plain = "kind: Deployment\nmetadata: {name: web}\nspec:\n  template:\n    \
                 metadata: {labels: {app: web}}\n    spec:\n      containers:\n      \
                 - {name: web, image: x, args: [\"a & b\", \"*\", \"&x\"]}\n";
    assert!(parse_manifests(plain).is_ok());
}
