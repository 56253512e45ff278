//! One operator, many tenants, end to end: what a tenant who wants to hurt another can write
//! (annotations, names, Secrets, API URLs, the answers of a server it points the operator at)
//! never reaches another's repositories, stalls the operator for others, or exhausts it.
//! Real kube-apiserver, the real operator binary, the emulator over HTTP; the servers a
//! hostile tenant would run are `crate::support::hostile`.
//!
//! One module per topic; here are the Secrets and objects more than one of them writes.

mod cleanup;
mod hostage;
mod input;
mod ownership;

use std::collections::BTreeMap;

use flashback_operator::crd::FlashbackRepository;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::PostParams;

use crate::support::scene::{Scene, condition};

/// Writes a Secret with exactly these bytes under these keys.
async fn put_secret(kube: &kube::Client, namespace: &str, name: &str, data: &[(&str, &[u8])]) {
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.to_string()),
            ..Default::default()
        },
        data: Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.to_vec())))
                .collect::<BTreeMap<_, _>>(),
        ),
        ..Secret::default()
    };
    Api::<Secret>::namespaced(kube.clone(), namespace)
        .create(&PostParams::default(), &secret)
        .await
        .expect("the Secret is written");
}

/// A Secret whose `apiUrl` sends the operator to `url` (a server of the test's).
async fn point_at(kube: &kube::Client, namespace: &str, name: &str, url: &str) {
    put_secret(
        kube,
        namespace,
        name,
        &[("token", b"whatever"), ("apiUrl", url.as_bytes())],
    )
    .await;
}

/// `repo` with its credentials from the Secret `secret`.
fn using(mut repo: FlashbackRepository, secret: &str) -> FlashbackRepository {
    repo.spec.credentials_secret_ref.as_mut().unwrap().name = secret.to_string();
    repo
}

/// A BACKUP repository over the scene's second bucket, in a folder of its own.
fn backup(scene: &Scene, name: &str, folder: usize) -> FlashbackRepository {
    let mut repo = scene.mirror(name);
    repo.spec.buckets.remove(0);
    repo.spec.buckets[0].folder = Some(format!("f{folder}"));
    repo.spec.mode = flashback_operator::crd::RepositoryMode::Backup;
    repo
}

fn stalled_message(repo: &FlashbackRepository) -> String {
    condition(repo, "Stalled").unwrap().message.clone()
}
