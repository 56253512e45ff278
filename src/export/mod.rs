//! `flashback-operator export`: an organisation's existing buckets and repositories written as
//! FlashbackBuckets and FlashbackRepositories that adopt them, ready to commit to Git.
//!
//! - [`render`]: the pure half, the organisation's listing in, manifests out.
//! - [`names`]: the Kubernetes names of the objects, made of the remote names.
//! - here: the edges: the token (from `FLASHBACK_TOKEN` or a file, never a flag, which `ps`
//!   shows), the API's listings, the cluster's objects (to tell what is already managed), and
//!   the output, one stream or a directory that appears whole or not at all.

pub mod names;
pub mod render;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use flashback_client::{
    ApiError, ClientConfig, FlashbackClient, RepoFilter, RetryPolicy, Token, Url,
};

use crate::crd::{FlashbackBucket, FlashbackRepository};
pub use render::{Managed, Manifests, Options, Organisation};

/// The environment variable the token is read from.
pub const TOKEN_VARIABLE: &str = "FLASHBACK_TOKEN";

/// What the command was asked.
#[derive(Debug, Clone)]
pub struct Request {
    pub api_url: Url,
    /// The workspaces to export; all of the organisation's when empty.
    pub workspaces: Vec<String>,
    /// Write a directory rather than print one stream.
    pub dir: Option<PathBuf>,
    /// Read the token from this file rather than from [`TOKEN_VARIABLE`].
    pub token_file: Option<PathBuf>,
    pub options: Options,
}

/// Why an export failed; each says what to do in one line.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("no Flashback token: set {TOKEN_VARIABLE} or pass --token-file FILE")]
    NoToken,
    #[error("cannot read the token file {path}: {source}")]
    TokenFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{flag} {value:?} is not a valid Kubernetes name")]
    InvalidName { flag: &'static str, value: String },
    #[error(
        "the Flashback API at {url} refused the token (check {TOKEN_VARIABLE} or --token-file)"
    )]
    TokenRefused { url: String },
    #[error("cannot reach the Flashback API at {url}: {source}")]
    Unreachable {
        url: String,
        #[source]
        source: Box<ApiError>,
    },
    #[error("could not {operation}: {source}")]
    Api {
        operation: &'static str,
        #[source]
        source: Box<ApiError>,
    },
    #[error("workspace {workspace} is not one of the organisation's ({known})")]
    UnknownWorkspace { workspace: String, known: String },
    #[error("--skip-managed needs the cluster's objects, which cannot be read: {reason}")]
    ClusterUnreadable { reason: String },
    #[error("cannot write the manifests as YAML: {0}")]
    Render(#[from] serde_saphyr::ser::Error),
    #[error("{path} exists and is not an empty directory: export into a new one")]
    DirNotEmpty { path: PathBuf },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Reads the organisation, renders it, and prints it or writes the directory. Nothing is
/// printed or written unless all of it succeeded.
pub async fn run(request: Request) -> Result<(), ExportError> {
    check_names(&request.options)?;
    if let Some(dir) = &request.dir {
        free(dir)?;
    }
    let token = token(request.token_file.as_deref())?;
    let client = client(&request.api_url, token)?;
    let mut org = read(&client, &request.workspaces).await?;
    match managed_in_cluster(request.options.namespace.as_deref()).await {
        Ok(managed) => org.managed = managed,
        Err(reason) if request.options.skip_managed => {
            return Err(ExportError::ClusterUnreadable { reason });
        }
        Err(reason) => eprintln!(
            "flashback-operator: not telling what the cluster already manages ({reason}); \
             nothing is marked as managed"
        ),
    }
    for workspace in org
        .workspaces
        .iter()
        .filter(|w| w.buckets.is_empty() && w.repos.is_empty())
    {
        eprintln!(
            "flashback-operator: workspace {} has no buckets or repositories",
            workspace.id.escape_debug()
        );
    }
    let manifests = render::render(&org, &request.options)?;
    match &request.dir {
        Some(dir) => {
            write_dir(dir, &manifests.files()?)?;
            eprintln!(
                "flashback-operator: wrote {} objects and {} into {}: apply with kubectl apply \
                 -k {}",
                manifests.objects.len(),
                render::KUSTOMIZATION,
                dir.display(),
                dir.display()
            );
        }
        None => print!("{}", manifests.stream()),
    }
    Ok(())
}

/// The namespace and Secret the objects would name must be names the API server takes.
fn check_names(options: &Options) -> Result<(), ExportError> {
    if let Some(namespace) = &options.namespace
        && !names::is_valid(namespace)
    {
        return Err(ExportError::InvalidName {
            flag: "--namespace",
            value: namespace.clone(),
        });
    }
    if let Some(secret) = &options.credentials_secret
        && !(secret.len() <= 253 && secret.split('.').all(names::is_valid))
    {
        return Err(ExportError::InvalidName {
            flag: "--credentials-secret",
            value: secret.clone(),
        });
    }
    Ok(())
}

/// The token: the file's first line when a file is named, else the environment variable.
fn token(file: Option<&Path>) -> Result<Token, ExportError> {
    let text = match file {
        Some(path) => std::fs::read_to_string(path).map_err(|source| ExportError::TokenFile {
            path: path.to_owned(),
            source,
        })?,
        None => std::env::var(TOKEN_VARIABLE).unwrap_or_default(),
    };
    let token = text.lines().next().unwrap_or_default().trim();
    if token.is_empty() {
        return Err(ExportError::NoToken);
    }
    Ok(Token::new(token))
}

/// A client that gives up soon on an API it cannot reach: a person is waiting.
fn client(url: &Url, token: Token) -> Result<FlashbackClient, ExportError> {
    let mut config = ClientConfig::new(url.clone(), token);
    config.timeout = Duration::from_secs(20);
    config.retry = RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(200),
        max_delay: Duration::from_secs(2),
    };
    FlashbackClient::new(config).map_err(|source| ExportError::Unreachable {
        url: url.to_string(),
        source: Box::new(source),
    })
}

/// The API's failure as a person reads it: a refused token and an API out of reach each say
/// so; anything else names what failed.
fn api_error(url: &Url, operation: &'static str, error: ApiError) -> ExportError {
    let last = match &error {
        ApiError::RetriesExhausted { last, .. } => last.as_ref(),
        other => other,
    };
    match last {
        ApiError::Unauthorized => ExportError::TokenRefused {
            url: url.to_string(),
        },
        ApiError::Transient { status: None, .. } => ExportError::Unreachable {
            url: url.to_string(),
            source: Box::new(error),
        },
        _ => ExportError::Api {
            operation,
            source: Box::new(error),
        },
    }
}

/// Lists the workspaces asked (all when none is), each with its buckets, repositories and
/// their keys, and, when a repository groups a bucket of another workspace, the organisation's
/// other buckets.
async fn read(client: &FlashbackClient, asked: &[String]) -> Result<Organisation, ExportError> {
    let url = client.base_url().clone();
    let failed = |operation| {
        let url = url.clone();
        move |error| api_error(&url, operation, error)
    };
    let known: BTreeSet<String> = client
        .list_workspaces()
        .await
        .map_err(failed("list the workspaces"))?
        .into_iter()
        .map(|w| w.id)
        .collect();
    let wanted: BTreeSet<String> = if asked.is_empty() {
        known.clone()
    } else {
        asked.iter().cloned().collect()
    };
    if let Some(unknown) = wanted.iter().find(|w| !known.contains(*w)) {
        return Err(ExportError::UnknownWorkspace {
            workspace: unknown.clone(),
            // What the server said is shown escaped: a terminal takes control characters too.
            known: known
                .iter()
                .map(|id| id.escape_debug().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    let mut workspaces = Vec::new();
    for id in &wanted {
        let buckets = client
            .list_buckets(Some(id))
            .await
            .map_err(failed("list the buckets"))?;
        let mut repos = Vec::new();
        for repo in client
            .list_repos(&RepoFilter::workspace(id))
            .await
            .map_err(failed("list the repositories"))?
        {
            let keys = client
                .list_repo_keys(&repo.id)
                .await
                .map_err(failed("list a repository's access keys"))?;
            repos.push((repo, keys));
        }
        workspaces.push(render::Workspace {
            id: id.clone(),
            buckets,
            repos,
        });
    }
    let listed: BTreeSet<&str> = workspaces
        .iter()
        .flat_map(|w| w.buckets.iter().map(|b| b.id.as_str()))
        .collect();
    let grouped_elsewhere = workspaces
        .iter()
        .flat_map(|w| w.repos.iter())
        .flat_map(|(repo, _)| repo.buckets.iter())
        .any(|b| !listed.contains(b.bucket_id.as_str()));
    let buckets_elsewhere = if grouped_elsewhere {
        client
            .list_buckets(None)
            .await
            .map_err(failed("list the organisation's buckets"))?
            .into_iter()
            .filter(|b| !listed.contains(b.id.as_str()))
            .collect()
    } else {
        Vec::new()
    };
    Ok(Organisation {
        api_url: url.to_string(),
        workspaces,
        buckets_elsewhere,
        managed: Managed::default(),
    })
}

/// The remote ids the cluster's objects manage (recorded in their status, or named by their
/// adoption annotation), read through the kubeconfig: in every namespace, or in `namespace`
/// when only that one may be listed. `Err` says why the cluster could not be read.
async fn managed_in_cluster(namespace: Option<&str>) -> Result<Managed, String> {
    let look = async {
        let kube = kube::Client::try_default()
            .await
            .map_err(|_| "no kubeconfig or in-cluster configuration".to_owned())?;
        let repos: Vec<FlashbackRepository> = list_all(&kube, namespace).await?;
        let buckets: Vec<FlashbackBucket> = list_all(&kube, namespace).await?;
        let mut managed = Managed::default();
        for repo in &repos {
            let recorded = repo.status.as_ref().and_then(|s| s.repo_id.as_deref());
            for id in recorded.into_iter().chain(repo.adopted_repo_id()) {
                managed.repos.insert(id.to_owned(), object_name(repo));
            }
        }
        for bucket in &buckets {
            let recorded = bucket.status.as_ref().and_then(|s| s.bucket_id.as_deref());
            for id in recorded.into_iter().chain(bucket.adopted_bucket_id()) {
                managed.buckets.insert(id.to_owned(), object_name(bucket));
            }
        }
        Ok(managed)
    };
    tokio::time::timeout(Duration::from_secs(15), look)
        .await
        .map_err(|_| "the cluster did not answer within 15s".to_owned())?
}

fn object_name<K: kube::Resource>(object: &K) -> String {
    use kube::ResourceExt;
    format!(
        "{}/{}",
        object.namespace().unwrap_or_default(),
        object.name_any()
    )
}

/// Every object of a kind in the cluster; only those of `namespace` when the others may not
/// be listed; none when the kind is not installed.
async fn list_all<K>(kube: &kube::Client, namespace: Option<&str>) -> Result<Vec<K>, String>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned,
    K::DynamicType: Default,
{
    let params = kube::api::ListParams::default();
    let all: kube::Api<K> = kube::Api::all(kube.clone());
    let listed = match (all.list(&params).await, namespace) {
        (Err(kube::Error::Api(status)), Some(namespace)) if status.is_forbidden() => {
            kube::Api::namespaced(kube.clone(), namespace)
                .list(&params)
                .await
        }
        (listed, _) => listed,
    };
    match listed {
        Ok(list) => Ok(list.items),
        Err(kube::Error::Api(status)) if status.is_not_found() => Ok(Vec::new()),
        Err(error) => Err(format!(
            "cannot list {}: {error}",
            K::plural(&Default::default())
        )),
    }
}

/// Whether `dir` can take an export: absent, or an empty directory.
fn free(dir: &Path) -> Result<(), ExportError> {
    let empty = || {
        std::fs::read_dir(dir)
            .map(|mut entries| entries.next().is_none())
            .unwrap_or(false)
    };
    if dir.exists() && !empty() {
        return Err(ExportError::DirNotEmpty {
            path: dir.to_owned(),
        });
    }
    Ok(())
}

/// Writes `files` into the new directory `dir`, whole or not at all: into a directory beside
/// it first, renamed to `dir` once every file is written. An existing `dir` must be empty.
pub fn write_dir(dir: &Path, files: &[(String, String)]) -> Result<(), ExportError> {
    let failed = |path: &Path| {
        let path = path.to_owned();
        move |source| ExportError::Write { path, source }
    };
    free(dir)?;
    let parent = match dir.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(failed(&parent))?;
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "export".to_owned());
    let temporary = parent.join(format!(
        ".{name}.export-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    let written = (|| {
        std::fs::create_dir(&temporary).map_err(failed(&temporary))?;
        for (file, text) in files {
            let path = temporary.join(file);
            std::fs::write(&path, text).map_err(failed(&path))?;
        }
        std::fs::rename(&temporary, dir).map_err(failed(dir))
    })();
    if written.is_err() {
        let _ = std::fs::remove_dir_all(&temporary);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(names: &[&str]) -> Vec<(String, String)> {
        names
            .iter()
            .map(|n| ((*n).to_owned(), format!("# {n}\n")))
            .collect()
    }

    #[test]
    fn a_directory_is_written_whole_into_a_new_or_empty_one() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("nested/export");
        write_dir(&dir, &files(&["kustomization.yaml", "bucket-a.yaml"])).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join("bucket-a.yaml")).unwrap(),
            "# bucket-a.yaml\n"
        );
        let empty = root.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        write_dir(&empty, &files(&["kustomization.yaml"])).unwrap();
        assert!(empty.join("kustomization.yaml").exists());
        // Nothing is left beside them.
        let mut left: Vec<String> = std::fs::read_dir(root.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["empty", "nested"]);
    }

    #[test]
    fn a_directory_that_is_not_empty_is_refused_and_left_as_it_was() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("export");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("mine.txt"), "keep").unwrap();
        let error = write_dir(&dir, &files(&["kustomization.yaml"])).unwrap_err();
        assert!(matches!(error, ExportError::DirNotEmpty { .. }), "{error}");
        assert_eq!(
            error.to_string(),
            format!(
                "{} exists and is not an empty directory: export into a new one",
                dir.display()
            )
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("mine.txt")).unwrap(),
            "keep"
        );
        assert!(!dir.join("kustomization.yaml").exists());
    }

    #[test]
    fn a_write_that_fails_half_way_leaves_nothing() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("export");
        // The second file cannot be written (its folder does not exist).
        let error =
            write_dir(&dir, &files(&["kustomization.yaml", "missing/bucket.yaml"])).unwrap_err();
        assert!(matches!(error, ExportError::Write { .. }), "{error}");
        assert!(!dir.exists());
        assert_eq!(
            std::fs::read_dir(root.path()).unwrap().count(),
            0,
            "no temporary left"
        );
    }

    #[test]
    fn the_token_comes_from_a_file_or_the_environment_and_never_empty() {
        let root = tempfile::tempdir().unwrap();
        let file = root.path().join("token");
        std::fs::write(&file, "  tok-1  \nignored\n").unwrap();
        assert_eq!(token(Some(&file)).unwrap().expose(), "tok-1");
        std::fs::write(&file, "\n").unwrap();
        assert!(matches!(token(Some(&file)), Err(ExportError::NoToken)));
        let missing = root.path().join("nope");
        let error = token(Some(&missing)).unwrap_err();
        assert!(
            error.to_string().starts_with("cannot read the token file"),
            "{error}"
        );
    }

    #[test]
    fn names_the_objects_would_carry_must_be_kubernetes_names() {
        let with = |namespace: Option<&str>, secret: Option<&str>| Options {
            namespace: namespace.map(str::to_owned),
            credentials_secret: secret.map(str::to_owned),
            ..Options::default()
        };
        assert!(check_names(&with(Some("team-a"), Some("flashback.token"))).is_ok());
        let error = check_names(&with(Some("Team A"), None)).unwrap_err();
        assert_eq!(
            error.to_string(),
            "--namespace \"Team A\" is not a valid Kubernetes name"
        );
        assert!(check_names(&with(None, Some("a;b"))).is_err());
    }

    #[test]
    fn a_refused_token_and_an_api_out_of_reach_each_say_so() {
        let url = Url::parse("http://127.0.0.1:9/").unwrap();
        let refused = api_error(&url, "list the workspaces", ApiError::Unauthorized);
        assert_eq!(
            refused.to_string(),
            "the Flashback API at http://127.0.0.1:9/ refused the token (check FLASHBACK_TOKEN \
             or --token-file)"
        );
        let unreachable = ApiError::RetriesExhausted {
            attempts: 3,
            last: Box::new(ApiError::Transient {
                status: None,
                reason: "connection refused".into(),
                retry_after: None,
                source: None,
            }),
        };
        let error = api_error(&url, "list the workspaces", unreachable);
        assert!(
            error
                .to_string()
                .starts_with("cannot reach the Flashback API at http://127.0.0.1:9/: "),
            "{error}"
        );
        let other = api_error(
            &url,
            "list the buckets",
            ApiError::Forbidden {
                message: "no".into(),
            },
        );
        assert!(
            other
                .to_string()
                .starts_with("could not list the buckets: ")
        );
    }
}
