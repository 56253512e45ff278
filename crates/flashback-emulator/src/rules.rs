//! What the real service refuses that a lenient server would take: the folder rules of NORMAL
//! repositories, names a soft delete keeps, cloud credentials that fail their check, and
//! workspaces that do not exist. Where the service's behaviour is not published, [`Rules`]
//! (set by flags and by `PUT /_emulator/rules`) says which reading the emulator keeps.
//! No HTTP here: the handlers call these checks under the organisation's lock.

use std::collections::{BTreeSet, HashSet};

use serde::{Deserialize, Serialize};

use super::state::{Failure, Org, RepoRecord, Unit};

/// Body of `PUT /_emulator/rules` and answer of `GET`: the emulator's reading of what the
/// service does where the reference is silent. In memory only, like the faults; the flags
/// set the first value.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rules {
    /// A deleted repository's or bucket's name stays taken: deletes are soft, and a create
    /// of that name answers `NAME_ALREADY_USED` though no listing shows the holder. Off: a
    /// delete frees the name.
    #[serde(default)]
    pub soft_delete_keeps_names: bool,
    /// Cloud access key ids the storage provider refuses: a bucket register or update with
    /// one, or a validate of a bucket holding one, answers 400 `{success: false, message}`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rejected_cloud_keys: Vec<String>,
    /// The workspaces every organisation has: a write naming another is refused, and
    /// `GET /workspace` lists these. Absent: open, any workspace a call names exists from
    /// then on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspaces: Option<Vec<String>>,
}

/// The rules in force and the buckets whose stored credentials were marked failing
/// (`PUT /_emulator/buckets/{id}/credentials`).
#[derive(Clone, Debug, Default)]
pub(crate) struct RuleState {
    pub rules: Rules,
    pub failing_buckets: HashSet<String>,
}

/// What a repository or bucket is, in the messages of a name clash.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Kind {
    Repository,
    Bucket,
}

/// The answer to a name that is taken: the live clash's words, so a caller cannot tell a
/// deleted holder from a listed one, as it could not on the service.
fn name_taken(kind: Kind, name: &str) -> Failure {
    let what = match kind {
        Kind::Repository => "a repository",
        Kind::Bucket => "a bucket",
    };
    Failure::new(
        409,
        "NAME_ALREADY_USED",
        format!("{what} named {name:?} already exists"),
    )
}

/// Refuses `name` when a deleted repository or bucket of the organisation held it and the
/// rules say soft deletes keep names. `current` is the name the write replaces (a PUT that
/// keeps its name is no clash).
pub(crate) fn name_not_held(
    org: &Org,
    rules: &Rules,
    kind: Kind,
    name: Option<&str>,
    current: Option<&str>,
) -> Result<(), Failure> {
    let Some(name) = name.map(str::trim).filter(|n| !n.is_empty()) else {
        return Ok(());
    };
    let deleted = match kind {
        Kind::Repository => &org.deleted_repo_names,
        Kind::Bucket => &org.deleted_bucket_names,
    };
    if rules.soft_delete_keeps_names && current != Some(name) && deleted.contains(name) {
        return Err(name_taken(kind, name));
    }
    Ok(())
}

/// Remembers the name of a deleted repository or bucket; a new holder of the name takes it
/// back (see [`name_reused`]).
pub(crate) fn name_deleted(org: &mut Org, kind: Kind, name: String) {
    names_of(org, kind).insert(name);
}

/// A repository or bucket of this name exists again: no deleted one holds it any more.
pub(crate) fn name_reused(org: &mut Org, kind: Kind, name: &str) {
    names_of(org, kind).remove(name.trim());
}

fn names_of(org: &mut Org, kind: Kind) -> &mut BTreeSet<String> {
    match kind {
        Kind::Repository => &mut org.deleted_repo_names,
        Kind::Bucket => &mut org.deleted_bucket_names,
    }
}

/// The reference's answer to credentials the storage provider refuses, on
/// `POST /bucket/{id}/validate`: 400 `{success: false, message}`, no code. A register or an
/// update, which the reference says check the credentials first, answers the same (a guess).
pub(crate) fn credentials_refused() -> Failure {
    Failure {
        status: 400,
        code: None,
        message: "Bucket credentials validation failed: the storage provider refused the \
                  access key"
            .to_owned(),
    }
}

/// Whether the storage provider takes a bucket's credentials: those a write brings (`given`),
/// else those bucket `bucket_id` holds; `key` is their access key id. Refused: a key the
/// rules name, or the held credentials of a bucket marked failing (credentials a write brings
/// are checked on their own, so new ones can replace failing ones).
pub(crate) fn credentials_pass(
    state: &RuleState,
    bucket_id: Option<&str>,
    given: bool,
    key: Option<&str>,
) -> bool {
    let rejected = key.is_some_and(|key| state.rules.rejected_cloud_keys.iter().any(|k| k == key));
    let marked = !given && bucket_id.is_some_and(|id| state.failing_buckets.contains(id));
    !(rejected || marked)
}

/// Refuses a write naming a workspace the organisation does not have, when the rules list
/// the workspaces. The code of the service's answer is not published: `NOT_FOUND` (a guess).
pub(crate) fn workspace_exists(rules: &Rules, workspace_id: Option<&str>) -> Result<(), Failure> {
    match (&rules.workspaces, workspace_id) {
        (Some(known), Some(id)) if !known.iter().any(|k| k == id) => Err(Failure::new(
            404,
            "NOT_FOUND",
            format!("workspace {id} not found"),
        )),
        _ => Ok(()),
    }
}

/// The workspaces `GET /workspace` lists for `org`: the rules' list, or, open, every
/// workspace a call named or a repository or bucket is in.
pub(crate) fn workspaces_of(org: &Org, rules: &Rules) -> Vec<String> {
    if let Some(known) = &rules.workspaces {
        return known.clone();
    }
    let mut all: BTreeSet<&str> = org.workspaces.iter().map(String::as_str).collect();
    all.extend(org.repos.values().map(|r| r.workspace_id.as_str()));
    all.extend(org.buckets.values().map(|b| b.workspace_id.as_str()));
    all.into_iter().map(str::to_owned).collect()
}

/// The workspace filter of a listing's query: the official TypeScript client sends the
/// literal `workspaceId=undefined` when called without one, which means no filter.
pub(crate) fn workspace_filter(value: Option<&str>) -> Option<&str> {
    value.filter(|ws| !ws.is_empty() && *ws != "undefined")
}

/// The folder rules of a NORMAL repository, on the buckets (`units`) of a write whose mode is
/// `mode`. `current` is the repository a PUT replaces, `others` every repository of the
/// organisation. The reference publishes only the codes; the emulator's reading of them:
///
/// - `NORMAL_UNIT_CANNOT_EDIT_FOLDER` (400): a PUT of a NORMAL repository keeps a bucket but
///   gives it another folder.
/// - `NORMAL_UNIT_FOLDER_CANNOT_DELETE` (400): a PUT of a NORMAL repository leaves out a
///   bucket (and so its folder) it had.
/// - `NORMAL_UNIT_FOLDER_ALREADY_USED` (409): a NORMAL write names a bucket and folder that
///   another NORMAL repository already uses (an unset folder being the bucket's root, "").
///   NORMAL repositories split a bucket by folders; other modes' use of a bucket is not
///   theirs to judge (MIRROR has its own rule).
pub(crate) fn normal_units<'a>(
    mode: &str,
    units: &[Unit],
    current: Option<&RepoRecord>,
    others: impl Iterator<Item = &'a RepoRecord>,
) -> Result<(), Failure> {
    let folder = |unit: &Unit| unit.folder.clone().unwrap_or_default();
    if let Some(current) = current.filter(|repo| repo.mode == "NORMAL") {
        for had in &current.units {
            match units.iter().find(|unit| unit.bucket_id == had.bucket_id) {
                None => {
                    return Err(Failure::new(
                        400,
                        "NORMAL_UNIT_FOLDER_CANNOT_DELETE",
                        format!(
                            "bucket {} (folder {:?}) cannot be removed from the NORMAL \
                             repository",
                            had.bucket_id,
                            folder(had)
                        ),
                    ));
                }
                Some(unit) if folder(unit) != folder(had) => {
                    return Err(Failure::new(
                        400,
                        "NORMAL_UNIT_CANNOT_EDIT_FOLDER",
                        format!(
                            "the folder of bucket {} in the NORMAL repository cannot change \
                             from {:?} to {:?}",
                            had.bucket_id,
                            folder(had),
                            folder(unit)
                        ),
                    ));
                }
                Some(_) => {}
            }
        }
    }
    if mode != "NORMAL" {
        return Ok(());
    }
    let current_id = current.map(|repo| repo.id.as_str());
    let normal_others = others.filter(|repo| repo.mode == "NORMAL");
    for other in normal_others.filter(|repo| Some(repo.id.as_str()) != current_id) {
        for unit in units {
            if other
                .units
                .iter()
                .any(|u| u.bucket_id == unit.bucket_id && folder(u) == folder(unit))
            {
                return Err(Failure::new(
                    409,
                    "NORMAL_UNIT_FOLDER_ALREADY_USED",
                    format!(
                        "folder {:?} of bucket {} is already used by repository {}",
                        folder(unit),
                        unit.bucket_id,
                        other.id
                    ),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(bucket: &str, folder: Option<&str>) -> Unit {
        Unit {
            bucket_id: bucket.into(),
            folder: folder.map(str::to_owned),
            master: false,
        }
    }

    fn repo(id: &str, mode: &str, units: Vec<Unit>) -> RepoRecord {
        serde_json::from_value(serde_json::json!({
            "id": id, "name": id, "storageType": "S3", "mode": mode, "workspaceId": "ws",
            "createdAt": "t", "units": units,
        }))
        .unwrap()
    }

    fn code(result: Result<(), Failure>) -> Option<&'static str> {
        result.err().and_then(|failure| failure.code)
    }

    #[test]
    fn a_normal_repository_keeps_its_buckets_and_their_folders() {
        let current = repo(
            "r1",
            "NORMAL",
            vec![unit("b1", Some("a")), unit("b2", None)],
        );
        let put = |units: Vec<Unit>, mode: &str| {
            code(normal_units(
                mode,
                &units,
                Some(&current),
                [&current].into_iter(),
            ))
        };
        assert_eq!(
            put(vec![unit("b1", Some("a")), unit("b2", Some(""))], "NORMAL"),
            None
        );
        assert_eq!(
            put(
                vec![unit("b1", Some("a")), unit("b2", None), unit("b3", None)],
                "NORMAL"
            ),
            None,
            "adding a bucket is allowed"
        );
        assert_eq!(
            put(vec![unit("b1", Some("b")), unit("b2", None)], "NORMAL"),
            Some("NORMAL_UNIT_CANNOT_EDIT_FOLDER")
        );
        assert_eq!(
            put(vec![unit("b1", Some("a"))], "BACKUP"),
            Some("NORMAL_UNIT_FOLDER_CANNOT_DELETE"),
            "whatever the new mode"
        );
        let mirror = repo("r2", "MIRROR", vec![unit("b1", Some("a"))]);
        assert_eq!(
            code(normal_units(
                "NORMAL",
                &[],
                Some(&mirror),
                std::iter::empty()
            )),
            None,
            "a MIRROR repository's buckets may go"
        );
    }

    #[test]
    fn a_bucket_folder_serves_one_repository_in_normal_mode() {
        let other = repo(
            "r1",
            "NORMAL",
            vec![unit("b1", Some("media")), unit("b2", None)],
        );
        let write = |mode: &str, units: Vec<Unit>| {
            code(normal_units(mode, &units, None, [&other].into_iter()))
        };
        assert_eq!(
            write("NORMAL", vec![unit("b1", Some("media"))]),
            Some("NORMAL_UNIT_FOLDER_ALREADY_USED")
        );
        assert_eq!(
            write("NORMAL", vec![unit("b2", Some(""))]),
            Some("NORMAL_UNIT_FOLDER_ALREADY_USED"),
            "an unset folder is the root"
        );
        assert_eq!(write("NORMAL", vec![unit("b1", Some("photos"))]), None);
        assert_eq!(write("BACKUP", vec![unit("b1", Some("media"))]), None);
        let backup = repo("r3", "BACKUP", vec![unit("b1", Some("media"))]);
        assert_eq!(
            code(normal_units(
                "NORMAL",
                &[unit("b1", Some("media"))],
                None,
                [&backup].into_iter()
            )),
            None,
            "another mode's use of a bucket is not judged by the folder rules"
        );
        // A repository's own buckets do not clash with it.
        assert_eq!(
            code(normal_units(
                "NORMAL",
                &other.units,
                Some(&other),
                [&other].into_iter()
            )),
            None
        );
    }

    #[test]
    fn soft_deleted_names_stay_taken_only_when_the_rules_say_so() {
        let mut org = Org::default();
        name_deleted(&mut org, Kind::Repository, "media".into());
        let kept = Rules {
            soft_delete_keeps_names: true,
            ..Rules::default()
        };
        let check = |org: &Org, rules: &Rules, kind, current| {
            name_not_held(org, rules, kind, Some(" media "), current)
        };
        assert_eq!(
            check(&org, &kept, Kind::Repository, None).unwrap_err().code,
            Some("NAME_ALREADY_USED")
        );
        assert!(check(&org, &kept, Kind::Bucket, None).is_ok(), "per kind");
        assert!(check(&org, &kept, Kind::Repository, Some("media")).is_ok());
        assert!(check(&org, &Rules::default(), Kind::Repository, None).is_ok());
        name_reused(&mut org, Kind::Repository, "media");
        assert!(check(&org, &kept, Kind::Repository, None).is_ok());
    }

    #[test]
    fn credentials_fail_when_named_by_the_rules_or_marked_on_the_bucket() {
        let mut state = RuleState::default();
        assert!(credentials_pass(&state, None, true, Some("AKIA1")));
        state.rules.rejected_cloud_keys = vec!["AKIA1".into()];
        assert!(!credentials_pass(&state, None, true, Some("AKIA1")));
        assert!(!credentials_pass(&state, Some("b1"), false, Some("AKIA1")));
        state.rules.rejected_cloud_keys.clear();
        state.failing_buckets.insert("b1".into());
        assert!(!credentials_pass(&state, Some("b1"), false, Some("AKIA2")));
        assert!(
            credentials_pass(&state, Some("b1"), true, Some("AKIA2")),
            "credentials a write brings are checked on their own"
        );
    }

    #[test]
    fn the_typescript_clients_undefined_is_no_filter() {
        assert_eq!(workspace_filter(Some("undefined")), None);
        assert_eq!(workspace_filter(Some("")), None);
        assert_eq!(workspace_filter(None), None);
        assert_eq!(workspace_filter(Some("ws-1")), Some("ws-1"));
    }
}
