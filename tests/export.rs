//! `flashback-operator export` end to end: an organisation made in the emulator (thirty
//! repositories of every mode and storage type over ten shared buckets, folders, masters and
//! keys, names that collide once made Kubernetes names, names in other scripts, a repository
//! grouping a bucket of another workspace, an empty workspace) is exported into a directory,
//! the directory applied as `kubectl apply -k` does and the cloud Secrets created with the
//! lines the export printed: every object becomes Ready and Flashback receives no write at all.
//! Then one repository switched to Full with a changed spec is exactly one PUT. And a refused
//! export says why in one line and writes nothing.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use flashback_client::{
    AccessType, BucketWrite, FlashbackClient, RepoBucketWrite, RepoKeyWrite, RepoMode, RepoWrite,
    StorageType,
};
use flashback_operator::crd::{FlashbackBucket, FlashbackRepository};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};

use crate::buckets::writes;
use crate::support::scene::{SECRET, Scene, WORKSPACE};

const MEDIA: &str = "ws-media";
const ARCHIVE: &str = "ws-archive";
const EMPTY: &str = "ws-empty";

/// The repositories made, as (id, name).
struct Made {
    repos: Vec<(String, String)>,
}

const STORAGE: [StorageType; 4] = [
    StorageType::S3,
    StorageType::Gcs,
    StorageType::Azure,
    StorageType::Blob,
];

/// Ten buckets (eight in `ws-media`, two in `ws-archive`) of every storage type, and thirty
/// repositories over them (MIRROR ones on buckets of their own, as the API wants, BACKUP and
/// NORMAL ones sharing the rest), some with access keys.
async fn organisation(api: &FlashbackClient) -> Made {
    let bucket_names = [
        "Media", "media", "MEDIA!", "照片", "Café", "logs", "backups", "scratch", "cold", "Фото",
    ];
    let mut buckets = Vec::new();
    for (i, name) in bucket_names.iter().enumerate() {
        let workspace = if i < 8 { MEDIA } else { ARCHIVE };
        let storage = STORAGE[i % 4].clone();
        let id = api
            .create_bucket(&BucketWrite {
                name: (*name).to_owned(),
                bucket: format!("cloud-bucket-{i}"),
                storage_type: storage,
                key: "AKIAEXPORTKEY0000001".to_owned(),
                secret: "export-cloud-secret".to_owned(),
                region: (i % 3 != 0).then(|| "eu-west-1".to_owned()),
                endpoint: (i % 4 == 1).then(|| "https://storage.example.com".to_owned()),
                workspace_id: workspace.to_owned(),
            })
            .await
            .expect("the bucket is registered");
        buckets.push(id);
    }
    let long = format!("{}-end", "very long repository name ".repeat(5));
    let mut repos = Vec::new();
    for i in 0..30 {
        let name = match i {
            0 => "Media".to_owned(),
            1 => "media".to_owned(),
            2 => "MEDIA!".to_owned(),
            3 => "照片 アルバム".to_owned(),
            4 => "Café Backups".to_owned(),
            5 => long.clone(),
            _ => format!("repo-{i:02}"),
        };
        let (mode, units): (RepoMode, Vec<(usize, Option<String>, bool)>) = match i {
            // MIRROR: one master, buckets no other MIRROR repository uses.
            0 => (
                RepoMode::Mirror,
                vec![(0, Some("m".into()), true), (1, None, false)],
            ),
            1 => (
                RepoMode::Mirror,
                vec![(2, None, true), (3, Some("copy".into()), false)],
            ),
            2 => (RepoMode::Mirror, vec![(4, Some("x".into()), true)]),
            // A repository of ws-media grouping a bucket of ws-archive.
            3 => (
                RepoMode::Mirror,
                vec![(8, None, true), (5, Some("m".into()), false)],
            ),
            _ if i % 2 == 0 => (
                RepoMode::Backup,
                vec![
                    (i % 10, Some(format!("b{i}")), false),
                    ((i + 3) % 10, None, false),
                ],
            ),
            _ => (
                RepoMode::Normal,
                vec![(i % 10, Some(format!("n{i}")), false)],
            ),
        };
        let workspace = if i >= 27 { ARCHIVE } else { MEDIA };
        let id = api
            .create_repo(&RepoWrite {
                name: name.clone(),
                storage_type: STORAGE[i % 4].clone(),
                mode,
                workspace_id: Some(workspace.to_owned()),
                repo_buckets: units
                    .into_iter()
                    .map(|(b, folder, master)| RepoBucketWrite {
                        bucket_id: buckets[b].clone(),
                        folder,
                        master,
                    })
                    .collect(),
                repo_ai_llms: vec![],
            })
            .await
            .unwrap_or_else(|e| panic!("repository {i} is created: {e}"));
        if i % 5 == 0 {
            for (key, access) in [("reader", AccessType::Read), ("writer", AccessType::Write)] {
                api.create_repo_key(
                    &id,
                    &RepoKeyWrite {
                        name: key.to_owned(),
                        access_type: access,
                    },
                )
                .await
                .expect("the key is issued");
            }
        }
        repos.push((id, name));
    }
    Made { repos }
}

/// Runs `flashback-operator export` with the scene's token in the environment.
fn export(scene: &Scene, args: &[&str]) -> Output {
    export_from(scene.emulator.base_url(), Some(&scene.token), args)
}

/// Runs `flashback-operator export` against `url`, with `token` (or none) in the environment.
fn export_from(url: &str, token: Option<&str>, args: &[&str]) -> Output {
    export_with_kubeconfig(
        url,
        token,
        args,
        &crate::support::cluster::kubeconfig_path(),
    )
}

/// [`export_from`] with the cluster of `kubeconfig`.
fn export_with_kubeconfig(
    url: &str,
    token: Option<&str>,
    args: &[&str],
    kubeconfig: &std::path::Path,
) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_flashback-operator"));
    command
        .arg("export")
        .args(["--api-url", url])
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env_remove("FLASHBACK_WATCH_NAMESPACE")
        .env_remove("FLASHBACK_TOKEN");
    if let Some(token) = token {
        command.env("FLASHBACK_TOKEN", token);
    }
    command.output().expect("the operator binary runs")
}

fn succeeded(output: &Output) -> String {
    assert!(
        output.status.success(),
        "export failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).expect("the export is UTF-8")
}

/// Every file of a directory, by name.
fn read_dir(dir: &Path) -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let path = entry.unwrap().path();
            (
                path.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read_to_string(&path).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

fn kubectl() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/control-plane/bin/kubectl")
}

/// Runs each `kubectl create secret` line the export printed, as a person would, with the
/// credentials in the environment variables it names.
fn create_cloud_secrets(files: &[(String, String)]) -> usize {
    let lines: Vec<String> = files
        .iter()
        .flat_map(|(_, text)| text.lines())
        .filter_map(|line| line.strip_prefix("#   kubectl create secret generic "))
        .map(|rest| format!("kubectl create secret generic {rest}"))
        .collect();
    let path = format!(
        "{}:{}",
        kubectl().parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for line in &lines {
        let output = Command::new("sh")
            .args(["-c", line])
            .env("PATH", &path)
            .env("KUBECONFIG", crate::support::cluster::kubeconfig_path())
            .env("AWS_ACCESS_KEY_ID", "AKIAEXPORTKEY0000001")
            .env("AWS_SECRET_ACCESS_KEY", "export-cloud-secret")
            .env("AZURE_STORAGE_ACCOUNT", "exportaccount")
            .env("AZURE_STORAGE_KEY", "export-cloud-secret")
            .output()
            .expect("sh runs");
        assert!(
            output.status.success(),
            "{line}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    lines.len()
}

fn ready_with(conditions: &[Condition], reason: &str) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True" && c.reason == reason)
}

/// Waits until every object of both kinds in the namespace is Ready with `reason`, or fails
/// naming those that are not.
async fn wait_all_ready(scene: &Scene, reason: &str, buckets: usize, repos: usize) {
    let bucket_api: Api<FlashbackBucket> = Api::namespaced(scene.kube.clone(), &scene.namespace);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let listed_buckets = bucket_api.list(&ListParams::default()).await.unwrap().items;
        let listed_repos = scene
            .repos
            .list(&ListParams::default())
            .await
            .unwrap()
            .items;
        let waiting: Vec<String> = listed_buckets
            .iter()
            .filter(|b| !ready_with(b.status.as_ref().map_or(&[], |s| &s.conditions), reason))
            .map(|b| {
                format!(
                    "bucket {}: {:?}",
                    b.metadata.name.as_deref().unwrap_or(""),
                    b.status
                )
            })
            .chain(
                listed_repos
                    .iter()
                    .filter(|r| {
                        !ready_with(r.status.as_ref().map_or(&[], |s| &s.conditions), reason)
                    })
                    .map(|r| {
                        format!(
                            "repository {}: {:?}",
                            r.metadata.name.as_deref().unwrap_or(""),
                            r.status
                        )
                    }),
            )
            .collect();
        if waiting.is_empty() && listed_buckets.len() == buckets && listed_repos.len() == repos {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not all Ready ({reason}): {} buckets, {} repositories listed; waiting:\n{}",
            listed_buckets.len(),
            listed_repos.len(),
            waiting.join("\n")
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test]
async fn an_exported_organisation_applied_is_all_ready_with_no_write_and_full_is_one_put() {
    let mut scene = Scene::new("export").await;
    scene
        .control
        .set_rules(&flashback_emulator::Rules {
            workspaces: Some(vec![
                WORKSPACE.to_owned(),
                MEDIA.to_owned(),
                ARCHIVE.to_owned(),
                EMPTY.to_owned(),
            ]),
            ..Default::default()
        })
        .await
        .unwrap();
    let api = crate::support::client(scene.emulator.base_url(), &scene.token);
    let made = organisation(&api).await;
    scene.control.reset_calls().await.unwrap();

    // Exported twice, into a directory and as a stream: the same bytes each time.
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("flashback");
    let namespace = scene.namespace.clone();
    let options = ["--namespace", &namespace, "--credentials-secret", SECRET];
    let dir_arg = dir.to_str().unwrap().to_owned();
    let first = export(&scene, &[&options[..], &["--dir", &dir_arg]].concat());
    succeeded(&first);
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert!(
        stderr.contains(&format!("workspace {EMPTY} has no buckets or repositories")),
        "{stderr}"
    );
    let files = read_dir(&dir);
    let again = root.path().join("again");
    succeeded(&export(
        &scene,
        &[&options[..], &["--dir", again.to_str().unwrap()]].concat(),
    ));
    assert_eq!(files, read_dir(&again), "a second export is byte-identical");
    let stream = succeeded(&export(&scene, &options));
    assert_eq!(stream, succeeded(&export(&scene, &options)));
    for (file, text) in &files[..] {
        if file != "kustomization.yaml" {
            assert!(
                stream.contains(text.as_str()),
                "{file} is in the stream too"
            );
        }
    }
    // Ten buckets of the organisation, the scene's two, thirty repositories, the kustomization.
    assert_eq!(
        files.len(),
        12 + 30 + 1,
        "{:?}",
        files.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    assert_eq!(
        writes(&scene).await,
        Vec::<String>::new(),
        "the export only reads"
    );

    // Names: valid, unique, the remote name kept in spec.name when it differs.
    let names: Vec<&str> = files
        .iter()
        .filter_map(|(f, _)| f.strip_prefix("repository-")?.strip_suffix(".yaml"))
        .collect();
    assert!(names.contains(&"media"), "{names:?}");
    // Made valid: suffixed with the id, whatever comes later.
    assert!(
        names.iter().any(|n| n.starts_with("cafe-backups-")),
        "{names:?}"
    );
    assert_eq!(
        names.iter().filter(|n| n.starts_with("media-")).count(),
        2,
        "{names:?}"
    );
    assert!(
        names.iter().any(|n| n.starts_with("repository-")),
        "{names:?}"
    );
    assert!(names.iter().all(|n| n.len() <= 63));
    let cross = files
        .iter()
        .find(|(_, text)| text.contains("照片 アルバム"))
        .expect("the non-ASCII repository");
    assert!(
        cross.1.contains("spec:\n  name: 照片 アルバム\n"),
        "{}",
        cross.1
    );
    assert!(cross.1.contains("bucketRef:"), "{}", cross.1);

    // Applied as `kubectl apply -k` does, and the Secrets made with the printed lines.
    let applied = Command::new(kubectl())
        .args(["apply", "-k"])
        .arg(&dir)
        .env("KUBECONFIG", crate::support::cluster::kubeconfig_path())
        .output()
        .expect("kubectl runs");
    assert!(
        applied.status.success(),
        "{}",
        String::from_utf8_lossy(&applied.stderr)
    );
    assert_eq!(create_cloud_secrets(&files), 12);
    scene.start_operator(&[]);
    wait_all_ready(&scene, "Observed", 12, 30).await;
    // A few resyncs later, still not one write.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(writes(&scene).await, Vec::<String>::new());
    let remote = api.list_repos(&Default::default()).await.unwrap();
    assert_eq!(remote.len(), 30);

    // Exported again once applied: the objects that manage the ids are this export's own, so
    // nothing changes. Into another namespace, they are another's: marked, or left out.
    assert_eq!(succeeded(&export(&scene, &options)), stream);
    let options = ["--namespace", "elsewhere", "--credentials-secret", SECRET];
    let marked = succeeded(&export(&scene, &options));
    assert_eq!(
        marked
            .matches("# Already managed by the FlashbackRepository")
            .count(),
        30
    );
    assert_eq!(
        marked
            .matches("# Already managed by the FlashbackBucket")
            .count(),
        12
    );
    let skipped = succeeded(&export(
        &scene,
        &[&options[..], &["--skip-managed"]].concat(),
    ));
    assert!(!skipped.contains("\nkind:"), "{skipped}");

    // One BACKUP repository switched to Full with a new folder: exactly one PUT.
    let (repo_id, _) = &made.repos[6];
    let object = scene
        .repos
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .find(|r: &FlashbackRepository| r.adopted_repo_id() == Some(repo_id.as_str()))
        .expect("the repository's object");
    let name = object.metadata.name.clone().unwrap();
    let mut buckets = serde_json::to_value(&object.spec.buckets).unwrap();
    buckets[0]["folder"] = "moved".into();
    scene
        .repos
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({
                "spec": {"managementPolicy": "Full", "buckets": buckets}
            })),
        )
        .await
        .unwrap();
    let ready = scene.wait_ready(&name).await;
    assert_eq!(
        crate::support::scene::condition(&ready, "Ready")
            .unwrap()
            .reason,
        "Synced"
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(writes(&scene).await, ["PUT /repo/{id} 200 x1"]);
    let listed = api
        .list_repos(&flashback_client::RepoFilter::repo(repo_id))
        .await
        .unwrap();
    assert!(
        listed[0]
            .buckets
            .iter()
            .any(|b| b.folder.as_deref() == Some("moved")),
        "{listed:?}"
    );
}

#[tokio::test]
async fn an_empty_workspace_exports_an_empty_kustomization() {
    let scene = Scene::new("export-empty").await;
    scene
        .control
        .set_rules(&flashback_emulator::Rules {
            workspaces: Some(vec![WORKSPACE.to_owned(), EMPTY.to_owned()]),
            ..Default::default()
        })
        .await
        .unwrap();
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("empty");
    let output = export(
        &scene,
        &["--workspace", EMPTY, "--dir", dir.to_str().unwrap()],
    );
    succeeded(&output);
    assert!(
        String::from_utf8_lossy(&output.stderr)
            .contains(&format!("workspace {EMPTY} has no buckets or repositories"))
    );
    let files = read_dir(&dir);
    assert_eq!(files.len(), 1);
    assert!(
        files[0].1.ends_with("kind: Kustomization\nresources: []\n"),
        "{}",
        files[0].1
    );
}

#[tokio::test]
async fn a_refused_export_says_why_in_one_line_and_writes_nothing() {
    let scene = Scene::new("export-refused").await;
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("out");
    let dir_arg = dir.to_str().unwrap();
    let refused = |output: Output| {
        assert!(!output.status.success());
        assert!(output.stdout.is_empty(), "nothing printed");
        let stderr = String::from_utf8(output.stderr).unwrap();
        let line = stderr
            .trim_end()
            .lines()
            .last()
            .unwrap_or_default()
            .to_owned();
        assert!(line.starts_with("flashback-operator: "), "{stderr}");
        assert!(!dir.exists(), "nothing written");
        line
    };
    let unknown = refused(export(
        &scene,
        &["--workspace", "ws-nope", "--dir", dir_arg],
    ));
    assert_eq!(
        unknown,
        format!(
            "flashback-operator: workspace ws-nope is not one of the organisation's ({WORKSPACE})"
        )
    );
    let output = export_from(
        scene.emulator.base_url(),
        Some("not-a-token"),
        &["--dir", dir_arg],
    );
    assert_eq!(
        refused(output),
        format!(
            "flashback-operator: the Flashback API at {}/ refused the token (check \
             FLASHBACK_TOKEN or --token-file)",
            scene.emulator.base_url().trim_end_matches('/')
        )
    );
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let output = export_from(&url, Some(&scene.token), &["--dir", dir_arg]);
    let line = refused(output);
    assert!(
        line.starts_with(&format!(
            "flashback-operator: cannot reach the Flashback API at {url}/"
        )),
        "{line}"
    );
    let output = export_from(scene.emulator.base_url(), None, &["--dir", dir_arg]);
    assert_eq!(
        refused(output),
        "flashback-operator: no Flashback token: set FLASHBACK_TOKEN or pass --token-file FILE"
    );
    // An existing directory with files of someone else's is never touched.
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("mine.yaml"), "keep").unwrap();
    let output = export(&scene, &["--dir", dir_arg]);
    assert!(!output.status.success());
    assert_eq!(
        std::fs::read_to_string(dir.join("mine.yaml")).unwrap(),
        "keep"
    );
    assert_eq!(read_dir(&dir).len(), 1);
}

#[tokio::test]
async fn without_a_cluster_nothing_is_marked_and_skipping_what_it_manages_is_refused() {
    let scene = Scene::new("export-nocluster").await;
    let root = tempfile::tempdir().unwrap();
    let nowhere = root.path().join("no-such-kubeconfig");
    // The token from a file, as --token-file reads it.
    let token_file = root.path().join("token");
    std::fs::write(&token_file, format!("{}\n", scene.token)).unwrap();
    let token_arg = token_file.to_str().unwrap();
    let url = scene.emulator.base_url();
    let output = export_with_kubeconfig(url, None, &["--token-file", token_arg], &nowhere);
    let stream = succeeded(&output);
    assert!(stream.contains("kind: FlashbackBucket"), "{stream}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with("flashback-operator: not telling what the cluster already manages (")
            && stderr.contains("); nothing is marked as managed"),
        "{stderr}"
    );
    let refused = export_with_kubeconfig(
        url,
        None,
        &["--token-file", token_arg, "--skip-managed"],
        &nowhere,
    );
    assert!(!refused.status.success());
    assert!(refused.stdout.is_empty(), "nothing printed");
    let line = String::from_utf8_lossy(&refused.stderr);
    assert!(
        line.starts_with(
            "flashback-operator: --skip-managed needs the cluster's objects, which cannot be read:"
        ) && line.lines().count() == 1,
        "{line}"
    );
}
