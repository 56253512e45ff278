//! The watches every kind shares: its own objects, Secrets (as metadata only), and the
//! plumbing that turns a channel or a watch into the streams a controller consumes.

use std::collections::HashSet;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;

use futures::StreamExt;
use futures::stream::BoxStream;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::{PartialObjectMeta, PartialObjectMetaExt};
use kube::runtime::reflector::store::Writer;
use kube::runtime::{WatchStreamExt, predicates, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use crate::controller::credentials::{CredentialsCache, SecretName, WatchId};
use crate::controller::shard::Selector;
use crate::settings::Settings;

/// Where a kind's watch puts what it sees: `own`, the objects this operator serves (the
/// cache its controller and the context read); with a selector, `everyone`, every object of
/// the kind (see [`Stores`](crate::controller::context::Stores)).
pub struct Feed<K: Resource<DynamicType = ()> + Clone + 'static> {
    pub own: Writer<K>,
    pub everyone: Option<Writer<K>>,
}

/// A kind's objects, as its controller consumes them: those `shard` selects (all, without
/// one), filling the stores of `feed`, and passed on only when something a reconcile depends
/// on changed (see [`worth_a_reconcile`]). With a selector, one watch of every object fills
/// both stores: an object whose labels stop matching leaves the own store at once (`left` is
/// told), as if it were deleted, and stays in `everyone`; one that comes back is looked at
/// again, even unchanged (see [`Arrivals`]). Without one, the stream is the plain watch.
pub fn objects<K>(
    api: Api<K>,
    shard: Option<Selector>,
    feed: Feed<K>,
    left: impl Fn(&K) + Send + 'static,
) -> impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync,
    K: 'static,
{
    let events = watcher(api, watcher::Config::default())
        .default_backoff()
        // Nothing reads them, and they were a third of the cache's memory.
        .modify(|object| object.managed_fields_mut().clear());
    match (shard, feed.everyone) {
        (Some(selector), Some(everyone)) => {
            let mut arrivals = Arrivals::default();
            events
                .reflect(everyone)
                .filter_map(move |event| {
                    let event = event.map(|event| served(event, &selector, &left));
                    futures::future::ready(event.transpose())
                })
                .reflect(feed.own)
                .filter_map(move |event| {
                    let object = event.map(|event| arrivals.worth_a_reconcile(event));
                    futures::future::ready(object.transpose())
                })
                .left_stream()
        }
        _ => events
            .reflect(feed.own)
            .applied_objects()
            .predicate_filter(worth_a_reconcile, Default::default())
            .right_stream(),
    }
}

/// [`worth_a_reconcile`] over the events of a shard's own objects: an object passes when its
/// fingerprint changed since it last passed, as kube's predicate filter does, and an object
/// that left (a Delete here) is forgotten, so that one that comes back exactly as it left
/// (moved to another shard and back) is looked at again: meanwhile another shard may have
/// acted on it, or its remote drifted.
#[derive(Default)]
pub struct Arrivals {
    fingerprints: std::collections::HashMap<String, u64>,
}

impl Arrivals {
    pub fn worth_a_reconcile<K: Resource>(&mut self, event: watcher::Event<K>) -> Option<K> {
        match event {
            watcher::Event::Apply(object) | watcher::Event::InitApply(object) => {
                let (Some(uid), Some(fingerprint)) =
                    (object.meta().uid.clone(), worth_a_reconcile(&object))
                else {
                    return Some(object);
                };
                (self.fingerprints.insert(uid, fingerprint) != Some(fingerprint)).then_some(object)
            }
            watcher::Event::Delete(object) => {
                if let Some(uid) = &object.meta().uid {
                    self.fingerprints.remove(uid);
                }
                None
            }
            watcher::Event::Init | watcher::Event::InitDone => None,
        }
    }
}

/// What the own store of a shard sees of one event of the watch of every object: an object
/// outside the selector as deleted (`left` is told), or, while listing, not at all.
pub fn served<K: Resource>(
    event: watcher::Event<K>,
    selector: &Selector,
    left: &impl Fn(&K),
) -> Option<watcher::Event<K>> {
    let selected = |object: &K| selector.matches(object.labels());
    match event {
        watcher::Event::Apply(object) if !selected(&object) => {
            left(&object);
            Some(watcher::Event::Delete(object))
        }
        watcher::Event::Delete(object) => {
            left(&object);
            Some(watcher::Event::Delete(object))
        }
        watcher::Event::InitApply(object) if !selected(&object) => None,
        other => Some(other),
    }
}

/// Secrets appearing, changing or going, as metadata only: the operator never holds their data
/// in a cache. Watching one namespace, the default Secret may live in another: it is watched
/// there by name. A watch's listing (at start, and again after a disconnect) reports only the
/// Secrets whose version differs from what `cache` read, and those it read that are gone: one
/// Secret shared by a thousand objects must not start a thousand reconciles at every start,
/// and a change made while the watch was away must not be lost. What the stream reports,
/// `cache` has forgotten: the reconciles it starts read the Secret afresh.
///
/// `also_listed` names Secrets a listing reports whatever their version (Secrets the cache does
/// not hold, such as a bucket's cloud credentials, whose change while the watch was away could
/// not be told otherwise).
pub fn secret_changes(
    kube: &Client,
    settings: &Settings,
    cache: Arc<CredentialsCache>,
    also_listed: impl Fn(&SecretName) -> bool + Send + Sync + 'static,
) -> BoxStream<'static, Result<PartialObjectMeta<Secret>, watcher::Error>> {
    let secrets: Api<PartialObjectMeta<Secret>> =
        namespaced_or_all(kube, settings.namespace.as_deref());
    let watched = settings.namespace.clone();
    let in_watched =
        move |name: &SecretName| watched.as_ref().is_none_or(|ns| *ns == name.namespace);
    let watch = cache.watch(in_watched);
    let changes = secret_events_in(
        watcher(secrets, watcher::Config::default()),
        cache.clone(),
        watch,
        also_listed,
    );
    match (&settings.namespace, &settings.default_credentials_secret) {
        (Some(watched), Some(default)) if *watched != default.namespace => {
            let api: Api<PartialObjectMeta<Secret>> =
                Api::namespaced(kube.clone(), &default.namespace);
            let by_name =
                watcher::Config::default().fields(&format!("metadata.name={}", default.name));
            let default = default.clone();
            let is_default = cache.watch(move |name: &SecretName| *name == default);
            let default_changes =
                secret_events_in(watcher(api, by_name), cache, is_default, |_| false);
            futures::stream::select(changes, default_changes).boxed()
        }
        _ => changes.boxed(),
    }
}

/// The Secret changes worth a look, from a watch whose listing covers the Secrets of `watch`'s
/// scope (see [`CredentialsCache::watch`]): every live change; from a listing, a Secret whose
/// version differs from one a read returned since this watch last reported it; at the end of a
/// listing, every Secret in scope the cache holds as existing and the listing did not show (as
/// a bare name). Each is forgotten by `cache` before it is passed on.
pub fn secret_events_in(
    events: impl futures::Stream<
        Item = Result<watcher::Event<PartialObjectMeta<Secret>>, watcher::Error>,
    > + Send
    + 'static,
    cache: Arc<CredentialsCache>,
    watch: WatchId,
    also_listed: impl Fn(&SecretName) -> bool + Send + Sync + 'static,
) -> BoxStream<'static, Result<PartialObjectMeta<Secret>, watcher::Error>> {
    // The Secrets the listing in progress showed.
    let listed: Arc<std::sync::Mutex<HashSet<SecretName>>> = Arc::default();
    let name_of = |secret: &PartialObjectMeta<Secret>| SecretName {
        namespace: secret.namespace().unwrap_or_default(),
        name: secret.name_any(),
    };
    events
        .default_backoff()
        .flat_map(move |event| {
            let mut listed = listed.lock().unwrap_or_else(|e| e.into_inner());
            let worth: Vec<PartialObjectMeta<Secret>> = match event {
                Ok(watcher::Event::Apply(secret) | watcher::Event::Delete(secret)) => {
                    vec![secret]
                }
                Ok(watcher::Event::Init) => {
                    cache.listing_started();
                    listed.clear();
                    Vec::new()
                }
                Ok(watcher::Event::InitApply(secret)) => {
                    let name = name_of(&secret);
                    let differs = cache.differs(watch, &name, secret.resource_version().as_deref());
                    listed.insert(name.clone());
                    if differs || also_listed(&name) {
                        vec![secret]
                    } else {
                        Vec::new()
                    }
                }
                Ok(watcher::Event::InitDone) => {
                    let unlisted = cache.unlisted(watch, &listed);
                    listed.clear();
                    unlisted
                        .into_iter()
                        .map(|name| {
                            ObjectMeta {
                                name: Some(name.name),
                                namespace: Some(name.namespace),
                                ..ObjectMeta::default()
                            }
                            .into_request_partial::<Secret>()
                        })
                        .collect()
                }
                Err(error) => return futures::stream::iter(vec![Err(error)]),
            };
            // Before the reconciles they start: those read the Secret afresh, and this
            // watch's next listing compares with what they read.
            for secret in &worth {
                cache.forget(watch, &name_of(secret));
            }
            futures::stream::iter(worth.into_iter().map(Ok).collect::<Vec<_>>())
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

/// The objects [`Fairness`](crate::controller::fairness::Fairness) parked and now wakes, as a
/// stream for `Controller::reconcile_on`.
pub fn parked<K>(
    mut receiver: tokio::sync::mpsc::UnboundedReceiver<kube::runtime::reflector::ObjectRef<K>>,
) -> impl futures::Stream<Item = kube::runtime::reflector::ObjectRef<K>> + Send + 'static
where
    K: kube::Resource + Send + 'static,
    K::DynamicType: Send,
{
    futures::stream::poll_fn(move |cx| receiver.poll_recv(cx))
}

/// A fingerprint of what a reconcile depends on: the spec (generation), annotations, finalizers
/// other than the operator's own, and deletion (labels only decide which shard serves it; one
/// that comes back is looked at again by [`Arrivals`]). The operator's own writes (the
/// status, with the record of a create attempt, and its finalizer) change none of these, so
/// its bookkeeping never triggers a reconcile (nor cuts a backoff short).
pub fn worth_a_reconcile<K: Resource>(object: &K) -> Option<u64> {
    let mut hasher = DefaultHasher::new();
    predicates::generation(object).hash(&mut hasher);
    object.meta().annotations.hash(&mut hasher);
    for finalizer in object.finalizers() {
        if finalizer != crate::crd::FINALIZER {
            finalizer.hash(&mut hasher);
        }
    }
    object.meta().deletion_timestamp.is_some().hash(&mut hasher);
    Some(hasher.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(name: &str, version: &str) -> PartialObjectMeta<Secret> {
        ObjectMeta {
            name: Some(name.into()),
            namespace: Some("team-a".into()),
            resource_version: Some(version.into()),
            ..ObjectMeta::default()
        }
        .into_request_partial::<Secret>()
    }

    fn name(name: &str) -> SecretName {
        format!("team-a/{name}").parse().unwrap()
    }

    /// What the stream of `watch` reports for these events, as "name@version" ("name@" for
    /// a bare name).
    async fn reported(
        cache: Arc<CredentialsCache>,
        watch: WatchId,
        events: Vec<watcher::Event<PartialObjectMeta<Secret>>>,
    ) -> Vec<String> {
        let stream = futures::stream::iter(events.into_iter().map(Ok));
        secret_events_in(stream, cache, watch, |_| false)
            .map(|secret| {
                let secret = secret.unwrap();
                format!(
                    "{}@{}",
                    secret.name_any(),
                    secret.resource_version().unwrap_or_default()
                )
            })
            .collect()
            .await
    }

    #[test]
    fn a_shard_sees_an_object_relabelled_away_as_deleted_and_one_of_another_shard_not_at_all() {
        let selector = Selector::parse("flashback.tech/shard in (blue)").unwrap();
        let labelled = |shard: Option<&str>| {
            let mut repo = crate::fixtures::repo("team-a", "media");
            repo.metadata.uid = Some("u1".into());
            if let Some(shard) = shard {
                repo.metadata.labels =
                    Some([("flashback.tech/shard".to_string(), shard.to_string())].into());
            }
            repo
        };
        let left = std::cell::RefCell::new(Vec::new());
        let tell = |object: &crate::crd::FlashbackRepository| {
            left.borrow_mut().push(object.name_any());
        };
        let kind = |event: Option<watcher::Event<crate::crd::FlashbackRepository>>| match event {
            Some(watcher::Event::Apply(_)) => "apply",
            Some(watcher::Event::Delete(_)) => "delete",
            Some(watcher::Event::InitApply(_)) => "init-apply",
            Some(_) => "other",
            None => "none",
        };
        let blue = labelled(Some("blue"));
        let red = labelled(Some("red"));
        let see = |event| kind(served(event, &selector, &tell));
        assert_eq!(see(watcher::Event::Apply(blue.clone())), "apply");
        assert_eq!(see(watcher::Event::InitApply(blue.clone())), "init-apply");
        assert_eq!(see(watcher::Event::InitApply(red.clone())), "none");
        assert!(left.borrow().is_empty());
        assert_eq!(see(watcher::Event::Apply(red.clone())), "delete");
        assert_eq!(see(watcher::Event::Apply(labelled(None))), "delete");
        assert_eq!(
            left.borrow().len(),
            2,
            "told each time it is not this shard's"
        );
    }

    #[test]
    fn an_object_that_comes_back_to_a_shard_unchanged_is_looked_at_again() {
        let mut repo = crate::fixtures::repo("team-a", "media");
        repo.metadata.uid = Some("u1".into());
        let mut arrivals = Arrivals::default();
        let mut passes = |event| arrivals.worth_a_reconcile(event).is_some();
        assert!(passes(watcher::Event::InitApply(repo.clone())));
        assert!(
            !passes(watcher::Event::Apply(repo.clone())),
            "nothing it depends on changed"
        );
        // It left this shard (the watch of a shard turns that into a Delete), and came back.
        assert!(!passes(watcher::Event::Delete(repo.clone())));
        assert!(passes(watcher::Event::Apply(repo.clone())));
        assert!(!passes(watcher::Event::Apply(repo.clone())));
    }

    #[tokio::test]
    async fn a_listing_reports_only_secrets_changed_or_gone_since_they_were_read() {
        let cache = Arc::new(CredentialsCache::default());
        let watch = cache.watch(|_| true);
        cache.remember(name("same"), Some("1"));
        cache.remember(name("changed"), Some("1"));
        cache.remember(name("was-missing"), None);
        cache.remember(name("gone"), Some("1"));
        let events = vec![
            watcher::Event::Init,
            watcher::Event::InitApply(secret("same", "1")),
            watcher::Event::InitApply(secret("changed", "2")),
            watcher::Event::InitApply(secret("was-missing", "5")),
            watcher::Event::InitApply(secret("never-read", "1")),
            watcher::Event::InitDone,
            watcher::Event::Apply(secret("same", "3")),
            watcher::Event::Delete(secret("never-read", "4")),
        ];
        assert_eq!(
            reported(cache, watch, events).await,
            [
                "changed@2",
                "was-missing@5",
                "gone@",
                "same@3",
                "never-read@4"
            ]
        );
    }

    #[tokio::test]
    async fn a_secret_read_but_not_kept_is_still_compared_by_a_later_listing() {
        // A reconcile read version 1 while a change was seen, so the cache did not keep it;
        // this watch lists only after the Secret moved to version 2.
        let cache = Arc::new(CredentialsCache::default());
        let watch = cache.watch(|_| true);
        cache.used_unkept(name("token"), Some("1"));
        cache.used_unkept(name("was-missing"), None);
        cache.used_unkept(name("gone"), Some("1"));
        let events = vec![
            watcher::Event::Init,
            watcher::Event::InitApply(secret("token", "2")),
            watcher::Event::InitApply(secret("was-missing", "3")),
            watcher::Event::InitDone,
        ];
        assert_eq!(
            reported(cache.clone(), watch, events).await,
            ["token@2", "was-missing@3", "gone@"]
        );
        // Once a change is reported, what was read before is forgotten with it.
        assert!(!cache.differs(watch, &name("token"), Some("9")));
    }

    #[tokio::test]
    async fn a_second_listing_compares_afresh() {
        let cache = Arc::new(CredentialsCache::default());
        let watch = cache.watch(|_| true);
        cache.remember(name("a"), Some("1"));
        cache.remember(name("b"), Some("1"));
        let events = vec![
            watcher::Event::Init,
            watcher::Event::InitApply(secret("a", "1")),
            watcher::Event::InitApply(secret("b", "1")),
            watcher::Event::InitDone,
            watcher::Event::Init,
            watcher::Event::InitApply(secret("a", "1")),
            watcher::Event::InitDone,
        ];
        assert_eq!(reported(cache, watch, events).await, ["b@"]);
    }

    /// The flake of `credentials::a_wrong_token_stalls_and_is_never_shown`: the repository and
    /// bucket controllers each watch Secrets, over one cache. The bucket controller's watch
    /// heard of the fixed token first and forgot the Secret; the repository controller's
    /// watch, whose first listing came only then, found nothing to compare with, and the
    /// repository stalled on the wrong token was never looked at again.
    #[tokio::test]
    async fn a_change_another_watch_reported_first_is_still_reported_by_a_late_listing() {
        let cache = Arc::new(CredentialsCache::default());
        let repositories = cache.watch(|_| true);
        let buckets = cache.watch(|_| true);
        // A repository reads version 1 (a wrong token) and stalls on it.
        cache.remember(name("token"), Some("1"));
        // The bucket controller's watch, live, hears of version 2 first, and a bucket that
        // uses the same Secret reads it.
        let live = vec![watcher::Event::Apply(secret("token", "2"))];
        assert_eq!(reported(cache.clone(), buckets, live).await, ["token@2"]);
        cache.remember(name("token"), Some("2"));
        // The repository controller's watch lists only now, and finds version 2.
        let listing = vec![
            watcher::Event::Init,
            watcher::Event::InitApply(secret("token", "2")),
            watcher::Event::InitDone,
        ];
        assert_eq!(
            reported(cache.clone(), repositories, listing.clone()).await,
            ["token@2"]
        );
        // Each has now reported it: neither reports it again.
        assert!(
            reported(cache.clone(), repositories, listing.clone())
                .await
                .is_empty()
        );
        assert!(reported(cache, buckets, listing).await.is_empty());
    }
}
