//! Proves that our kube client and the real kube-apiserver built by `tests/control-plane/`
//! agree: core objects round-trip, a CRD becomes Established and is served, watches deliver.

use std::collections::BTreeMap;

use crate::support::cluster::{DEADLINE, kube_client, test_namespace};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::{ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::api::{ObjectMeta, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::runtime::watcher;

#[tokio::test]
async fn server_reports_the_version_we_built() {
    let client = kube_client().await;
    let info = client.apiserver_version().await.expect("version");
    let versions = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/control-plane/versions.env"
    ))
    .unwrap();
    let built = versions
        .lines()
        .find_map(|l| l.strip_prefix("KUBERNETES_VERSION="))
        .expect("versions.env names the Kubernetes version");
    assert_eq!(info.git_version, format!("v{built}"));
}

#[tokio::test]
async fn namespace_and_secret_round_trip() {
    let client = kube_client().await;
    let namespace = test_namespace(&client, "roundtrip").await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some("flashback-token".into()),
            ..ObjectMeta::default()
        },
        string_data: Some(BTreeMap::from([(
            "token".to_string(),
            "s3cr3t".to_string(),
        )])),
        ..Secret::default()
    };
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .expect("secret is created");

    let read = secrets
        .get("flashback-token")
        .await
        .expect("secret is read");
    assert_eq!(read.metadata.namespace.as_deref(), Some(namespace.as_str()));
    assert_eq!(
        read.data.unwrap().get("token"),
        Some(&ByteString(b"s3cr3t".to_vec())),
        "stringData is stored and served back as data"
    );
}

const WIDGET_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.test.flashback.tech
spec:
  group: test.flashback.tech
  names: {kind: Widget, plural: widgets, singular: widget}
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              required: [size]
              properties:
                size: {type: integer, minimum: 1}
"#;

#[tokio::test]
async fn crd_becomes_established_and_is_served() {
    let client = kube_client().await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd: CustomResourceDefinition = serde_saphyr::from_str(WIDGET_CRD).unwrap();
    crds.patch(
        "widgets.test.flashback.tech",
        &PatchParams::apply("flashback-operator-tests").force(),
        &Patch::Apply(&crd),
    )
    .await
    .expect("CRD is applied");
    let established = await_condition(
        crds.clone(),
        "widgets.test.flashback.tech",
        conditions::is_crd_established(),
    );
    tokio::time::timeout(DEADLINE, established)
        .await
        .expect("CRD is Established before the deadline")
        .expect("watch works");

    let namespace = test_namespace(&client, "crd").await;
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(
        "test.flashback.tech",
        "v1",
        "Widget",
    ));
    let widgets: Api<DynamicObject> = Api::namespaced_with(client, &namespace, &resource);
    let mut widget = DynamicObject::new("small", &resource);
    widget.data = serde_json::json!({"spec": {"size": 3}});
    widgets
        .create(&PostParams::default(), &widget)
        .await
        .expect("a valid widget is accepted");
    assert_eq!(widgets.get("small").await.unwrap().data["spec"]["size"], 3);

    widget.metadata.name = Some("invalid".into());
    widget.data = serde_json::json!({"spec": {"size": 0}});
    let refused = widgets
        .create(&PostParams::default(), &widget)
        .await
        .expect_err("the schema's minimum is enforced by the server");
    assert!(refused.to_string().contains("spec.size"), "{refused}");
}

#[tokio::test]
async fn watch_delivers_create_update_and_delete() {
    let client = kube_client().await;
    let namespace = test_namespace(&client, "watch").await;
    let config_maps: Api<ConfigMap> = Api::namespaced(client, &namespace);
    let mut events = watcher(config_maps.clone(), watcher::Config::default()).boxed();

    let observed = async {
        // Changes start once the initial list is done, so each one arrives as a watch event.
        while !matches!(next_event(&mut events).await, watcher::Event::InitDone) {}
        let mut map = ConfigMap {
            metadata: ObjectMeta {
                name: Some("watched".into()),
                ..ObjectMeta::default()
            },
            data: Some(BTreeMap::from([("step".into(), "created".into())])),
            ..ConfigMap::default()
        };
        map = config_maps
            .create(&PostParams::default(), &map)
            .await
            .unwrap();
        map.data = Some(BTreeMap::from([("step".into(), "updated".into())]));
        config_maps
            .replace("watched", &PostParams::default(), &map)
            .await
            .unwrap();
        config_maps
            .delete("watched", &DeleteParams::default())
            .await
            .unwrap();

        let mut seen = Vec::new();
        loop {
            match next_event(&mut events).await {
                watcher::Event::Apply(map) => seen.push(format!("applied {}", step(&map))),
                watcher::Event::Delete(map) => {
                    seen.push(format!("deleted {}", step(&map)));
                    return seen;
                }
                other => panic!("unexpected event after the initial list: {other:?}"),
            }
        }
    };
    let seen = tokio::time::timeout(DEADLINE, observed)
        .await
        .expect("every event arrives before the deadline");
    assert_eq!(
        seen,
        ["applied created", "applied updated", "deleted updated"]
    );
}

async fn next_event(
    events: &mut (impl futures::Stream<Item = watcher::Result<watcher::Event<ConfigMap>>> + Unpin),
) -> watcher::Event<ConfigMap> {
    events
        .try_next()
        .await
        .expect("the watch stream has no error")
        .expect("the watch stream does not end")
}

fn step(map: &ConfigMap) -> &str {
    map.data
        .as_ref()
        .and_then(|d| d.get("step"))
        .map_or("", String::as_str)
}
