//! The watches every kind shares: Secrets (as metadata only) and the plumbing that turns a
//! channel or a watch into the streams a controller consumes.

use std::sync::Arc;

use futures::StreamExt;
use futures::stream::BoxStream;
use k8s_openapi::api::core::v1::Secret;
use kube::core::PartialObjectMeta;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};

use crate::controller::credentials::CredentialsCache;
use crate::settings::Settings;

/// Secrets appearing or changing, as metadata only: the operator never holds their data in a
/// cache. Watching one namespace, the default Secret may live in another: it is watched there
/// by name. The watch's initial listing is left out: every object is reconciled at start anyway,
/// and one Secret shared by a thousand objects would start a thousand more reconciles.
pub fn secret_changes(
    kube: &Client,
    settings: &Settings,
    cache: Arc<CredentialsCache>,
) -> BoxStream<'static, Result<PartialObjectMeta<Secret>, watcher::Error>> {
    let secrets: Api<PartialObjectMeta<Secret>> =
        namespaced_or_all(kube, settings.namespace.as_deref());
    let relisted = {
        let cache = cache.clone();
        move || cache.forget_all()
    };
    let changes = changes_only(watcher(secrets, watcher::Config::default()), relisted);
    match (&settings.namespace, &settings.default_credentials_secret) {
        (Some(watched), Some(default)) if *watched != default.namespace => {
            let api: Api<PartialObjectMeta<Secret>> =
                Api::namespaced(kube.clone(), &default.namespace);
            let by_name =
                watcher::Config::default().fields(&format!("metadata.name={}", default.name));
            let default_changes = changes_only(watcher(api, by_name), move || cache.forget_all());
            futures::stream::select(changes, default_changes).boxed()
        }
        _ => changes.boxed(),
    }
}

/// The objects a watch sees change after its initial listing. `relisted` is called when the
/// watch lists afresh (at start, and after a disconnect), since changes made meanwhile are not
/// reported one by one.
fn changes_only<K: Send + 'static>(
    events: impl futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
    relisted: impl Fn() + Send + Sync + 'static,
) -> BoxStream<'static, Result<K, watcher::Error>> {
    let relisted = Arc::new(relisted);
    events
        .default_backoff()
        .filter_map(move |event| {
            let relisted = relisted.clone();
            async move {
                match event {
                    Ok(watcher::Event::Apply(object) | watcher::Event::Delete(object)) => {
                        Some(Ok(object))
                    }
                    Ok(watcher::Event::Init) => {
                        relisted();
                        None
                    }
                    Ok(watcher::Event::InitApply(_) | watcher::Event::InitDone) => None,
                    Err(error) => Some(Err(error)),
                }
            }
        })
        .boxed()
}

/// All namespaces, or the one the operator watches.
pub fn namespaced_or_all<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    <K as kube::Resource>::DynamicType: Default,
{
    match namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    }
}

/// The messages of a channel as a stream.
pub fn stream_of<T: Send + 'static>(
    mut receiver: tokio::sync::mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> + Send + 'static {
    futures::stream::poll_fn(move |cx| receiver.poll_recv(cx))
}
