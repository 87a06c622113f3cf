//! Service names as Kubernetes' DNS writes them: which service of the desired state a name
//! means (`NAME`, `NAME.NAMESPACE`, `NAME.NAMESPACE.svc.cluster.local`).

use weeble_crdt::{ObjectKey, Snapshot};

/// The cluster's domain: services are `NAME.NAMESPACE.svc.cluster.local`.
pub const CLUSTER_DOMAIN: &str = "cluster.local";

/// What a queried name is to this node.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup {
    /// A service of the desired state.
    Service(ObjectKey),
    /// A name under `cluster.local` that names no service.
    NoSuchName,
    /// Some other name: not ours to answer.
    NotOurs,
}

/// Which service `name` (any case, with or without the final dot) names, if any.
pub fn lookup(name: &str, snapshot: &Snapshot) -> Lookup {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let (short, ours) = match name.strip_suffix(CLUSTER_DOMAIN) {
        Some(rest) => match rest.strip_suffix(".svc.") {
            Some(short) => (short, true),
            None => return Lookup::NoSuchName,
        },
        None => (name.strip_suffix(".svc").unwrap_or(&name), false),
    };
    let key = match short.split('.').collect::<Vec<_>>()[..] {
        [service, namespace] => ObjectKey::new(namespace, service),
        [service] if !ours => short_name(service, snapshot),
        _ if ours => return Lookup::NoSuchName,
        _ => return Lookup::NotOurs,
    };
    match (snapshot.services.contains_key(&key), ours) {
        (true, _) => Lookup::Service(key),
        (false, true) => Lookup::NoSuchName,
        (false, false) => Lookup::NotOurs,
    }
}

/// The service a bare `NAME` means: the `default` namespace's, else that of the first
/// namespace (by name) that has one. Kubernetes takes the asker's namespace from its search
/// path; this server cannot tell who asks, but every service has the same address here (the
/// node's, where its proxy serves all of them), so what matters is that the name exists.
fn short_name(service: &str, snapshot: &Snapshot) -> ObjectKey {
    let default = ObjectKey::new("default", service);
    if snapshot.services.contains_key(&default) {
        return default;
    }
    let named = snapshot.services.keys().find(|key| key.name == service);
    named.cloned().unwrap_or(default)
}

#[cfg(test)]
mod tests {
    use super::*;
    use weeble_crdt::{Object, parse_manifests};

    fn snapshot() -> Snapshot {
        let mut snapshot = Snapshot::default();
        let services = "kind: Service\nmetadata: {name: nginx-service}\nspec:\n  selector: {app: nginx}\n  ports: [{port: 80}]\n---\nkind: Service\nmetadata: {name: db, namespace: shop}\nspec:\n  selector: {app: db}\n  ports: [{port: 5432}]\n";
        for object in parse_manifests(services).unwrap().objects {
            if let Object::Service(s) = object {
                snapshot.services.insert(s.meta.key(), s.into());
            }
        }
        snapshot
    }

    #[test]
    fn service_names_resolve_in_every_kubernetes_form() {
        let s = snapshot();
        let nginx = Lookup::Service(ObjectKey::new("default", "nginx-service"));
        for name in [
            "nginx-service.default.svc.cluster.local.",
            "NGINX-SERVICE.default.svc.cluster.local",
            "nginx-service.default.svc",
            "nginx-service.default",
            "nginx-service",
        ] {
            assert_eq!(lookup(name, &s), nginx, "{name}");
        }
        let db = Lookup::Service(ObjectKey::new("shop", "db"));
        assert_eq!(lookup("db.shop.svc.cluster.local.", &s), db);
        assert_eq!(lookup("db", &s), db, "the one namespace with a db");
    }

    #[test]
    fn a_short_name_in_several_namespaces_is_the_default_one_s_first() {
        let mut s = snapshot();
        let shop = weeble_crdt::Service::clone(&s.services[&ObjectKey::new("shop", "db")]);
        for namespace in ["default", "archive"] {
            let mut copy = shop.clone();
            copy.meta.namespace = namespace.into();
            s.services.insert(copy.meta.key(), copy.into());
        }
        let service = |namespace| Lookup::Service(ObjectKey::new(namespace, "db"));
        assert_eq!(lookup("db", &s), service("default"));
        s.services.remove(&ObjectKey::new("default", "db"));
        assert_eq!(lookup("db", &s), service("archive"), "first by name");
    }

    #[test]
    fn unknown_names_under_cluster_local_do_not_exist_and_others_are_not_ours() {
        let s = snapshot();
        for name in [
            "nothing.default.svc.cluster.local.",
            "db.default.svc.cluster.local",
            "cluster.local",
            "a.b.c.svc.cluster.local",
        ] {
            assert_eq!(lookup(name, &s), Lookup::NoSuchName, "{name}");
        }
        for name in ["example.com.", "www.example.com", "localhost"] {
            assert_eq!(lookup(name, &s), Lookup::NotOurs, "{name}");
        }
    }
}
