//! A workspace's repositories as the operator knows them: one listing, indexed once when it
//! is fetched, and the operator's own writes since, kept beside it.
//!
//! Reconciles in flight hold the view they decided on; a write made meanwhile changes only
//! the small record of writes, never the listing, so a burst of creates in a workspace of
//! 10,000 repositories copies nothing of the listing (copying it on every write was quadratic
//! in the burst) and every lookup by id or name is a hash lookup, not a scan.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use flashback_client::Repo;

#[derive(Clone, Default)]
pub struct Workspace {
    listed: Arc<Listed>,
    /// The operator's own writes since the listing: id → the repository as written, or
    /// `None` once it was deleted.
    written: Arc<BTreeMap<String, Option<Repo>>>,
}

#[derive(Default)]
struct Listed {
    repos: Vec<Repo>,
    by_id: HashMap<String, usize>,
    /// Every position of each name, in listing order (a server may answer a name twice).
    by_name: HashMap<String, Vec<usize>>,
}

impl Workspace {
    /// The view of a fresh listing.
    pub fn listed(repos: Vec<Repo>) -> Self {
        let mut by_id = HashMap::with_capacity(repos.len());
        let mut by_name: HashMap<String, Vec<usize>> = HashMap::with_capacity(repos.len());
        for (n, repo) in repos.iter().enumerate() {
            // The first of an id answered twice wins, as a scan in listing order would find.
            by_id.entry(repo.id.clone()).or_insert(n);
            by_name.entry(repo.name.clone()).or_default().push(n);
        }
        Self {
            listed: Arc::new(Listed {
                repos,
                by_id,
                by_name,
            }),
            written: Arc::default(),
        }
    }

    /// The repository with this id, if the workspace has it.
    pub fn by_id(&self, id: &str) -> Option<&Repo> {
        match self.written.get(id) {
            Some(written) => written.as_ref(),
            None => self.listed.by_id.get(id).map(|&n| &self.listed.repos[n]),
        }
    }

    /// Every repository with this name: those listed first, in listing order, then those
    /// the operator wrote since.
    pub fn named(&self, name: &str) -> impl Iterator<Item = &Repo> + '_ {
        let listed = self
            .listed
            .by_name
            .get(name)
            .into_iter()
            .flatten()
            .map(|&n| &self.listed.repos[n])
            .filter(|repo| !self.written.contains_key(&repo.id));
        let name = name.to_string();
        let written = self
            .written
            .values()
            .flatten()
            .filter(move |repo| repo.name == name);
        listed.chain(written)
    }

    /// Every repository: those listed, then those the operator wrote since.
    pub fn iter(&self) -> impl Iterator<Item = &Repo> {
        self.listed
            .repos
            .iter()
            .filter(|repo| !self.written.contains_key(&repo.id))
            .chain(self.written.values().flatten())
    }

    pub fn len(&self) -> usize {
        self.iter().count()
    }

    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }

    /// Records the operator's own write: `repo` as it now is, or `None` when deleted.
    pub fn record(&mut self, id: &str, repo: Option<Repo>) {
        Arc::make_mut(&mut self.written).insert(id.to_string(), repo);
    }
}

impl From<Vec<Repo>> for Workspace {
    fn from(repos: Vec<Repo>) -> Self {
        Self::listed(repos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flashback_client::{RepoMode, StorageType};

    fn repo(id: &str, name: &str) -> Repo {
        Repo {
            id: id.into(),
            name: name.into(),
            storage_type: StorageType::S3,
            mode: RepoMode::Backup,
            workspace_id: Some("ws".into()),
            created_at: None,
            buckets: Vec::new(),
            disabled: None,
            ai_llms: Vec::new(),
        }
    }

    fn ids<'a>(repos: impl Iterator<Item = &'a Repo>) -> Vec<&'a str> {
        repos.map(|r| r.id.as_str()).collect()
    }

    #[test]
    fn writes_since_the_listing_override_it_by_id() {
        let mut workspace = Workspace::listed(vec![repo("r1", "a"), repo("r2", "b")]);
        let before = workspace.clone();
        workspace.record("r3", Some(repo("r3", "c")));
        workspace.record("r1", None);
        let mut renamed = repo("r2", "b2");
        renamed.mode = RepoMode::Mirror;
        workspace.record("r2", Some(renamed));

        assert_eq!(ids(workspace.iter()), ["r2", "r3"]);
        assert_eq!(workspace.len(), 2);
        assert!(workspace.by_id("r1").is_none());
        assert_eq!(
            workspace.by_id("r2").map(|r| &r.mode),
            Some(&RepoMode::Mirror)
        );
        assert_eq!(ids(workspace.named("b")), Vec::<&str>::new());
        assert_eq!(ids(workspace.named("b2")), ["r2"]);
        assert_eq!(ids(workspace.named("c")), ["r3"]);
        // A view taken before the writes still shows the listing as it was.
        assert_eq!(ids(before.iter()), ["r1", "r2"]);
        assert_eq!(ids(before.named("a")), ["r1"]);
    }

    #[test]
    fn a_name_or_id_answered_twice_is_found_in_listing_order() {
        let workspace = Workspace::listed(vec![
            repo("r1", "same"),
            repo("r2", "same"),
            repo("r1", "other"),
        ]);
        assert_eq!(ids(workspace.named("same")), ["r1", "r2"]);
        assert_eq!(workspace.by_id("r1").map(|r| r.name.as_str()), Some("same"));
        assert!(Workspace::default().is_empty());
    }
}
