//! The statistics task: on its own interval, reads the usage figures of every managed
//! repository with batched `GET /repo/stats` calls (one series of batches per credential) and
//! patches `status.stats` of only the objects whose figures changed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::runtime::reflector::Store;
use kube::{Api, ResourceExt};
use serde_json::json;
use tracing::{debug, warn};

use crate::controller::context::Context;
use crate::controller::credentials::{self, SecretName};
use crate::controller::periodic::{self, First};
use crate::crd::{FlashbackRepository, RepositoryStats};
use flashback_client::RepoStats;

/// Refreshes statistics every `interval` until `stop` resolves.
pub async fn run(
    store: Store<FlashbackRepository>,
    ctx: Arc<Context>,
    interval: Duration,
    stop: impl std::future::Future<Output = ()>,
) {
    periodic::every(&store, interval, First::AtOnce, stop, || {
        refresh(&store, &ctx)
    })
    .await;
}

/// How many credentials' statistics are read at once: one credential's slow API delays
/// only its own figures.
const CREDENTIALS_AT_ONCE: usize = 8;

/// How many status writes of one credential's figures are in flight at once.
const WRITES_AT_ONCE: usize = 8;

/// One pass over every object that has a remote repository.
pub async fn refresh(store: &Store<FlashbackRepository>, ctx: &Context) {
    let groups = by_credentials(
        &store.state(),
        ctx.settings.default_credentials_secret.as_ref(),
    );
    futures::stream::iter(groups)
        .for_each_concurrent(CREDENTIALS_AT_ONCE, |(secret, repos)| {
            refresh_credential(ctx, secret, repos)
        })
        .await;
}

/// The statistics of the objects that use one credential.
async fn refresh_credential(
    ctx: &Context,
    secret: SecretName,
    repos: Vec<Arc<FlashbackRepository>>,
) {
    let credentials = match ctx.credentials_of(&repos[0]).await {
        Ok(Ok(credentials)) => credentials,
        // The reconciler reports missing or broken credentials on each object.
        Ok(Err(problem)) => {
            debug!(secret = %secret, problem = %problem, "no statistics without credentials");
            return;
        }
        Err(error) => {
            warn!(secret = %secret, error = %error, "cannot read the credentials Secret");
            return;
        }
    };
    let ids: Vec<String> = repos
        .iter()
        .filter_map(|r| repo_id(r).map(str::to_string))
        .collect();
    let figures = match ctx.remote.stats(&credentials, &ids).await {
        Ok(figures) => figures,
        Err(error) => {
            warn!(secret = %secret, error = %error, "cannot read repository statistics");
            return;
        }
    };
    let by_id: BTreeMap<&str, &RepoStats> =
        figures.iter().map(|f| (f.repo_id.as_str(), f)).collect();
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let writes: Vec<_> = repos
        .iter()
        .filter_map(|repo| {
            let fetched = by_id.get(repo_id(repo)?)?;
            let current = repo.status.as_ref().and_then(|s| s.stats.as_ref());
            Some((repo, changed(current, fetched, &now)?))
        })
        .collect();
    // Side by side: one after another, 10,000 first figures took longer than an interval.
    futures::stream::iter(writes)
        .for_each_concurrent(WRITES_AT_ONCE, |(repo, stats)| async move {
            write(ctx, repo, &stats).await
        })
        .await;
}

fn repo_id(repo: &FlashbackRepository) -> Option<&str> {
    repo.status.as_ref()?.repo_id.as_deref()
}

/// Objects that have a remote repository, grouped by the Secret their credentials come from.
fn by_credentials(
    repos: &[Arc<FlashbackRepository>],
    default: Option<&SecretName>,
) -> BTreeMap<SecretName, Vec<Arc<FlashbackRepository>>> {
    let mut groups: BTreeMap<SecretName, Vec<Arc<FlashbackRepository>>> = BTreeMap::new();
    for repo in repos {
        if repo.metadata.deletion_timestamp.is_some() || repo_id(repo).is_none() {
            continue;
        }
        if let Ok(secret) = credentials::secret_for(repo, default) {
            groups.entry(secret).or_default().push(repo.clone());
        }
    }
    groups
}

/// The statistics to write, or `None` when the figures are the ones already in the status.
/// Figures beyond what the status can hold (2^63 - 1) are capped there.
pub fn changed(
    current: Option<&RepositoryStats>,
    fetched: &RepoStats,
    now: &Time,
) -> Option<RepositoryStats> {
    let capped = |value: u128| i64::try_from(value).unwrap_or(i64::MAX);
    let next = RepositoryStats {
        total_upload_bytes: capped(fetched.total_upload_bytes),
        total_download_bytes: capped(fetched.total_download_bytes),
        total_size_change: i64::try_from(fetched.total_size_change).unwrap_or(
            if fetched.total_size_change < 0 {
                i64::MIN
            } else {
                i64::MAX
            },
        ),
        observed_at: now.clone(),
    };
    let same = current.is_some_and(|c| {
        (
            c.total_upload_bytes,
            c.total_download_bytes,
            c.total_size_change,
        ) == (
            next.total_upload_bytes,
            next.total_download_bytes,
            next.total_size_change,
        )
    });
    (!same).then_some(next)
}

async fn write(ctx: &Context, repo: &FlashbackRepository, stats: &RepositoryStats) {
    let api: Api<FlashbackRepository> =
        Api::namespaced(ctx.kube.clone(), &repo.namespace().unwrap_or_default());
    let patch = json!({ "status": { "stats": stats } });
    if let Err(error) = api
        .patch_status(
            &repo.name_any(),
            &PatchParams::default(),
            &Patch::Merge(patch),
        )
        .await
    {
        warn!(name = repo.name_any(), error = %error, "cannot write repository statistics");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    fn fetched(upload: u128, download: u128, change: i128) -> RepoStats {
        RepoStats {
            repo_id: "r1".into(),
            total_upload_bytes: upload,
            total_download_bytes: download,
            total_size_change: change,
        }
    }

    #[test]
    fn first_figures_and_changed_figures_are_written() {
        let now = fixtures::time("2026-11-26T20:00:00Z");
        let first = changed(None, &fetched(10, 2, -5), &now).expect("first figures are written");
        assert_eq!(
            (
                first.total_upload_bytes,
                first.total_download_bytes,
                first.total_size_change
            ),
            (10, 2, -5)
        );
        assert_eq!(first.observed_at, now);

        let later = fixtures::time("2026-11-26T20:05:00Z");
        assert_eq!(
            changed(Some(&first), &fetched(10, 2, -5), &later),
            None,
            "same figures, no write"
        );
        let next = changed(Some(&first), &fetched(11, 2, -5), &later)
            .expect("changed figures are written");
        assert_eq!(next.total_upload_bytes, 11);
        assert_eq!(next.observed_at, later);
    }

    #[test]
    fn figures_beyond_int64_are_capped() {
        let now = fixtures::time("2026-11-26T20:00:00Z");
        let huge = changed(None, &fetched(u128::MAX, 0, i128::MIN), &now).unwrap();
        assert_eq!(huge.total_upload_bytes, i64::MAX);
        assert_eq!(huge.total_size_change, i64::MIN);
    }

    #[test]
    fn only_objects_with_a_remote_repo_are_asked_for_and_grouped_by_secret() {
        let mut a = fixtures::repo("team-a", "a");
        a.status = Some(fixtures::status_with_id("ra"));
        let mut b = fixtures::repo("team-a", "b");
        b.status = Some(fixtures::status_with_id("rb"));
        let not_created = fixtures::repo("team-a", "new");
        let mut other = fixtures::repo("team-b", "c");
        other.status = Some(fixtures::status_with_id("rc"));
        let mut deleting = fixtures::repo("team-a", "gone");
        deleting.status = Some(fixtures::status_with_id("rg"));
        deleting.metadata.deletion_timestamp = Some(fixtures::time("2026-11-26T20:00:00Z"));

        let repos: Vec<_> = [a, b, not_created, other, deleting]
            .into_iter()
            .map(Arc::new)
            .collect();
        let groups = by_credentials(&repos, None);
        let names: Vec<(String, Vec<String>)> = groups
            .into_iter()
            .map(|(secret, repos)| {
                (
                    secret.to_string(),
                    repos.iter().map(|r| r.name_any()).collect(),
                )
            })
            .collect();
        assert_eq!(
            names,
            [
                (
                    "team-a/flashback-token".to_string(),
                    vec!["a".to_string(), "b".to_string()]
                ),
                ("team-b/flashback-token".to_string(), vec!["c".to_string()]),
            ]
        );
    }
}
