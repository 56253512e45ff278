//! Sessions: a credentials Secret that holds only a refresh token, access tokens that live
//! three seconds, and the operator keeping the session alive through them, through a leader
//! hand-over and through kills around the one write that keeps a renewed refresh token.
//!
//! End to end: the real `flashback-operator` binary, the real kube-apiserver, and the
//! emulator issuing sessions as the service does (rotating refresh tokens, a spent one
//! refused and counted as a reuse).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use flashback_emulator::IssuedSession;
use flashback_operator::crd::FlashbackRepository;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;

use crate::support::operator::Operator;
use crate::support::scene::{SECRET, Scene, condition};

const LIFETIME: Duration = Duration::from_secs(3);

/// A scene whose credentials Secret holds only the refresh token of a new session, access
/// tokens living three seconds.
async fn session_scene(prefix: &str) -> (Scene, IssuedSession) {
    let scene = Scene::new(prefix).await;
    scene
        .control
        .set_access_token_lifetime(LIFETIME)
        .await
        .unwrap();
    let session = scene.control.open_session(&scene.token).await.unwrap();
    put_refresh_token(&scene, SECRET, &session).await;
    (scene, session)
}

async fn put_refresh_token(scene: &Scene, name: &str, session: &IssuedSession) {
    scene
        .put_secret(name, &[("refreshToken", &session.refresh_token)])
        .await;
}

/// A BACKUP repository over the scene's two buckets (any number of them may share buckets).
fn backup(scene: &Scene, name: &str, secret: &str) -> FlashbackRepository {
    let folders = [format!("{name}-a"), format!("{name}-b")];
    scene.over_both_buckets(name, "BACKUP", [&folders[0], &folders[1]], secret)
}

fn ready(repo: &FlashbackRepository) -> bool {
    condition(repo, "Ready").is_some_and(|c| c.status == "True")
}

/// Every Ready=True that was lost while sampling, as "name: reason" lines; the drift the
/// test itself makes is set back under the reason `Updating`, which is not counted.
struct ReadyWatch {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<(usize, Vec<String>)>,
}

impl ReadyWatch {
    /// Samples every object of the namespace four times a second.
    fn start(scene: &Scene) -> Self {
        let repos = scene.repos.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let task = tokio::spawn(async move {
            let (mut samples, mut lost) = (0, Vec::new());
            while !stopping.load(Ordering::SeqCst) {
                for repo in repos.list(&Default::default()).await.unwrap().items {
                    samples += 1;
                    let reason = condition(&repo, "Ready").map(|c| c.reason.clone());
                    if !ready(&repo) && reason.as_deref() != Some("Updating") {
                        lost.push(format!("{}: {reason:?}", repo.metadata.name.unwrap()));
                    }
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            (samples, lost)
        });
        Self { stop, task }
    }

    async fn finish(self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.unwrap()
    }
}

async fn create_ready(scene: &Scene, names: &[String], secret: &str) {
    for name in names {
        scene.create(&backup(scene, name, secret)).await;
    }
    for name in names {
        scene.wait_ready(name).await;
    }
}

/// Changes behind the operator's back for `length`: a repository renamed (drift the resync
/// sets back) and new usage figures for all of them, every second.
async fn changes_for(scene: &Scene, names: &[String], length: Duration) {
    let started = Instant::now();
    let mut round = 0u64;
    while started.elapsed() < length {
        round += 1;
        let repos = scene.remote_repos().await;
        let target = &repos[(round as usize) % repos.len()];
        scene
            .control
            .patch_repo(
                &target.id,
                &flashback_emulator::RepoPatch {
                    name: Some(format!("{}-drifted-{round}", target.name)),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        for repo in &repos {
            scene
                .control
                .set_repo_stats(
                    &repo.id,
                    &flashback_emulator::StatsPatch::repo(round * 10, round, round),
                )
                .await
                .unwrap();
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert_eq!(names.len(), scene.remote_repos().await.len());
}

/// No token, old or new, in what the operator printed: the emulator's tokens all begin so.
fn assert_no_token_in(output: &str) {
    for prefix in ["fbat-", "fbrt-"] {
        assert!(
            !output.contains(prefix),
            "a session token ({prefix}...) appears in the operator's output"
        );
    }
}

async fn session_secret(scene: &Scene, of: &str) -> Option<Secret> {
    Api::<Secret>::namespaced(scene.kube.clone(), &scene.namespace)
        .get_opt(&format!("{of}-session"))
        .await
        .unwrap()
}

#[tokio::test]
async fn twenty_repositories_stay_ready_on_a_refresh_token_through_a_minute_of_three_second_tokens()
{
    let (mut scene, _session) = session_scene("session").await;
    scene.start_operator(&["--stats-interval", "2s"]);
    let names: Vec<String> = (0..20).map(|i| format!("repo-{i:02}")).collect();
    create_ready(&scene, &names, SECRET).await;
    let before = scene.control.sessions().await.unwrap();

    let watch = ReadyWatch::start(&scene);
    let started = Instant::now();
    changes_for(&scene, &names, Duration::from_secs(60)).await;
    let took = started.elapsed();
    let (samples, lost) = watch.finish().await;
    let after = scene.control.sessions().await.unwrap();
    let refreshes = after.refreshes - before.refreshes;
    println!(
        "{} repositories, {took:?} of changes, access tokens living {LIFETIME:?}: {refreshes} \
         refreshes, {} refused, {} reuses; {samples} samples of Ready, {} lost",
        names.len(),
        after.refused,
        after.reused,
        lost.len()
    );
    assert_eq!(lost, Vec::<String>::new(), "objects that left Ready");
    assert!(samples > 20 * 100, "the watch sampled ({samples})");
    // One renewal per token lifetime for all twenty objects, not one per object: at most a
    // tenth of a lifetime is given up to renew early.
    let expected = took.as_secs_f64() / LIFETIME.as_secs_f64();
    assert!(
        (refreshes as f64) >= expected * 0.5 && (refreshes as f64) <= expected * 1.5,
        "{refreshes} refreshes in {took:?}, about {expected:.0} expected"
    );
    assert_eq!((after.refused, after.reused), (0, 0));
    // Drift was corrected all along: the renames are set back (the last within a resync).
    tokio::time::timeout(Duration::from_secs(10), async {
        while scene
            .remote_repos()
            .await
            .iter()
            .any(|repo| repo.name.contains("-drifted-"))
        {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .expect("every rename is set back");
    let kept = session_secret(&scene, SECRET)
        .await
        .expect("the session Secret");
    assert_eq!(kept.type_.as_deref(), Some("flashback.tech/session"));
    assert_eq!(
        kept.metadata.owner_references, None,
        "not owned by the credentials Secret: a replaced one must find its session again"
    );
    let output = scene.operator().output();
    assert_no_token_in(&output);
}

#[tokio::test]
async fn a_leader_hand_over_spends_no_refresh_token_twice() {
    let (scene, _session) = session_scene("session-ha").await;
    let flags = [
        "--leader-election",
        "--leader-election-namespace",
        scene.namespace.as_str(),
        "--leader-election-lease-duration",
        "4s",
    ];
    let start = || Operator::start(&scene.namespace, scene.emulator.base_url(), &flags);
    let mut first = start();
    let names: Vec<String> = (0..5).map(|i| format!("ha-{i}")).collect();
    create_ready(&scene, &names, SECRET).await;
    let second = start();
    second.wait_for_output("waiting to lead").await;
    // Long enough for several renewals by the first leader.
    changes_for(&scene, &names, Duration::from_secs(10)).await;
    let before = scene.control.sessions().await.unwrap();
    assert!(before.refreshes >= 2, "{before:?}");

    assert!(first.terminate(), "the first leader stops on SIGTERM");
    second.wait_for_output("became the leader").await;
    let watch = ReadyWatch::start(&scene);
    changes_for(&scene, &names, Duration::from_secs(12)).await;
    let (_, lost) = watch.finish().await;
    let after = scene.control.sessions().await.unwrap();
    assert_eq!(lost, Vec::<String>::new(), "objects that left Ready");
    assert!(
        after.refreshes > before.refreshes,
        "the new leader renewed the session: {after:?}"
    );
    assert_eq!((after.refused, after.reused), (0, 0), "{after:?}");
    for name in &names {
        let repo = scene.repos.get(name).await.unwrap();
        assert!(ready(&repo), "{name}: {:?}", repo.status);
    }
    assert_no_token_in(&(first.output() + &second.output()));
}

#[tokio::test]
async fn a_kill_right_after_the_renewed_session_is_kept_loses_nothing() {
    let (mut scene, _session) = session_scene("session-kept").await;
    scene.start_operator_at_failpoint("pause-after-session-kept");
    scene.create(&backup(&scene, "kept", SECRET)).await;
    scene
        .operator()
        .wait_for_output("failpoint pause-after-session-kept reached")
        .await;
    scene.operator().kill_hard();
    scene.start_operator(&[]);
    scene.wait_ready("kept").await;
    let figures = scene.control.sessions().await.unwrap();
    assert!(figures.refreshes >= 1, "{figures:?}");
    assert_eq!((figures.refused, figures.reused), (0, 0), "{figures:?}");
}

#[tokio::test]
async fn a_kill_before_the_renewed_session_is_kept_stalls_once_and_a_new_login_recovers() {
    let (mut scene, _session) = session_scene("session-lost").await;
    scene.start_operator_at_failpoint("pause-before-session-kept");
    scene.create(&backup(&scene, "lost", SECRET)).await;
    scene
        .operator()
        .wait_for_output("failpoint pause-before-session-kept reached")
        .await;
    // The service spent the refresh token; only the killed process knew the new one.
    scene.operator().kill_hard();
    scene.start_operator(&[]);
    // The killed process's claim on the refresh token is waited on (15 s) before it counts
    // as abandoned.
    let stalled = scene
        .wait_for_within(
            Duration::from_secs(45),
            "lost",
            "Stalled (RefreshTokenRefused)",
            |repo| {
                condition(repo, "Stalled")
                    .is_some_and(|c| c.status == "True" && c.reason == "RefreshTokenRefused")
            },
        )
        .await;
    let message = condition(&stalled, "Stalled").unwrap().message.clone();
    assert!(
        message.contains(&format!(
            "flashback-operator login --email YOU --secret {}/{SECRET}",
            scene.namespace
        )),
        "{message}"
    );
    let figures = scene.control.sessions().await.unwrap();
    assert_eq!((figures.refreshes, figures.reused), (1, 1), "{figures:?}");
    let sent = scene.calls("POST", "/user/refresh").await;
    assert_eq!(sent, 2, "the first refresh and the one refused");
    // Nothing is sent again: not at the next resyncs, not by the next process.
    tokio::time::sleep(Duration::from_secs(7)).await;
    scene.operator().kill_hard();
    scene.start_operator(&[]);
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert_eq!(
        scene.calls("POST", "/user/refresh").await,
        sent,
        "a spent refresh token sent again"
    );
    let repo = scene.repos.get("lost").await.unwrap();
    assert_eq!(
        condition(&repo, "Stalled").map(|c| c.reason.as_str()),
        Some("RefreshTokenRefused")
    );
    assert!(scene.has_event("lost", "RefreshTokenRefused").await);

    // A new login, put into the Secret: Ready again without a restart.
    let fresh = scene.control.open_session(&scene.token).await.unwrap();
    put_refresh_token(&scene, SECRET, &fresh).await;
    scene.wait_ready("lost").await;
    assert_no_token_in(&scene.operator().output());
}

#[tokio::test]
async fn a_revoked_session_stalls_its_credentials_only_and_a_new_refresh_token_recovers_them() {
    let (mut scene, session) = session_scene("session-revoked").await;
    // Other credentials of the same organisation: a second session, in another Secret.
    let other = scene.control.open_session(&scene.token).await.unwrap();
    put_refresh_token(&scene, "other", &other).await;
    scene.start_operator(&[]);
    let revoked: Vec<String> = (0..3).map(|i| format!("revoked-{i}")).collect();
    let untouched: Vec<String> = (0..2).map(|i| format!("other-{i}")).collect();
    create_ready(&scene, &revoked, SECRET).await;
    create_ready(&scene, &untouched, "other").await;

    scene
        .control
        .revoke_session(&session.token_id)
        .await
        .unwrap();
    // Within one resync (3 s) after the access token expires (3 s), and some slack.
    let within = Duration::from_secs(3) + LIFETIME + Duration::from_secs(6);
    let started = Instant::now();
    for name in &revoked {
        scene
            .wait_for_within(within, name, "Stalled (RefreshTokenRefused)", |repo| {
                condition(repo, "Stalled")
                    .is_some_and(|c| c.status == "True" && c.reason == "RefreshTokenRefused")
            })
            .await;
    }
    println!("stalled {:?} after the revocation", started.elapsed());
    for name in &untouched {
        let repo = scene.repos.get(name).await.unwrap();
        assert!(ready(&repo), "{name}: {:?}", repo.status);
    }

    let fresh = scene.control.open_session(&scene.token).await.unwrap();
    put_refresh_token(&scene, SECRET, &fresh).await;
    for name in &revoked {
        scene.wait_ready(name).await;
    }
    assert_no_token_in(&scene.operator().output());
}

/// Runs `flashback-operator login` with the password on stdin.
fn login(scene: &Scene, secret: &str, password: &str, apply: bool) -> std::process::Output {
    use std::io::Write;
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_flashback-operator"));
    command
        .args(["login", "--api-url", scene.emulator.base_url()])
        .args(["--email", "ops@example.com", "--secret"])
        .arg(format!("{}/{secret}", scene.namespace))
        .env("KUBECONFIG", crate::support::cluster::kubeconfig_path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    if apply {
        command.arg("--apply");
    }
    let mut child = command.spawn().expect("the operator binary starts");
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    child.wait_with_output().unwrap()
}

#[tokio::test]
async fn login_prints_or_writes_a_secret_the_operator_keeps_a_session_from() {
    let mut scene = Scene::new("session-login").await;
    let password = "correct horse battery";
    scene
        .control
        .add_user("ops@example.com", password, &scene.token)
        .await
        .unwrap();

    let wrong = login(&scene, "printed", "wrong", false);
    assert!(!wrong.status.success());
    let said = String::from_utf8_lossy(&wrong.stderr);
    assert!(
        said.contains("the Flashback API refused the login"),
        "{said}"
    );

    let printed = login(&scene, "printed", password, false);
    assert!(printed.status.success(), "{printed:?}");
    let text = String::from_utf8(printed.stdout).unwrap();
    let secret: Secret = serde_saphyr::from_str(&text).expect("a Secret manifest");
    assert_eq!(
        secret.metadata.namespace.as_deref(),
        Some(scene.namespace.as_str())
    );
    let keys: Vec<String> = secret.data.unwrap().into_keys().collect();
    assert_eq!(keys, ["apiUrl", "refreshToken", "token"]);
    assert!(!text.contains(password));

    let applied = login(&scene, SECRET, password, true);
    assert!(applied.status.success(), "{applied:?}");
    assert!(!String::from_utf8_lossy(&applied.stderr).contains(password));
    scene.start_operator(&["--allowed-api-hosts", "127.0.0.1"]);
    scene.create(&backup(&scene, "logged-in", SECRET)).await;
    scene.wait_ready("logged-in").await;
    assert_eq!(scene.control.sessions().await.unwrap().logins, 2);
}

#[tokio::test]
async fn a_credentials_secret_made_again_with_its_first_refresh_token_goes_on_from_the_kept_session()
 {
    let (mut scene, session) = session_scene("session-gitops").await;
    scene.start_operator(&[]);
    scene.create(&backup(&scene, "synced", SECRET)).await;
    scene.wait_ready("synced").await;
    // A few renewals: the first refresh token is long spent.
    changes_for(&scene, &["synced".to_owned()], Duration::from_secs(8)).await;
    assert!(scene.control.sessions().await.unwrap().refreshes >= 2);
    // A GitOps tool replaces the Secret from Git: deleted, made again as it was.
    put_refresh_token(&scene, SECRET, &session).await;
    let watch = ReadyWatch::start(&scene);
    changes_for(&scene, &["synced".to_owned()], Duration::from_secs(10)).await;
    let (_, lost) = watch.finish().await;
    assert_eq!(lost, Vec::<String>::new());
    let figures = scene.control.sessions().await.unwrap();
    assert_eq!((figures.refused, figures.reused), (0, 0), "{figures:?}");
}

#[tokio::test]
async fn two_processes_claiming_one_refresh_token_spend_it_once() {
    use flashback_client::{Claim, SessionStore, SessionTokens, Token};
    use flashback_operator::controller::session::SecretSessionStore;

    let scene = Scene::new("session-claim").await;
    scene.put_secret("shared", &[("refreshToken", "r0")]).await;
    let name: flashback_operator::settings::SecretName =
        format!("{}/shared", scene.namespace).parse().unwrap();
    let r0 = Token::new("r0");
    // Each process: claim; when it may spend, "refresh" for a second and keep what it got.
    let process = |holder: &'static str| {
        let store = SecretSessionStore::new(scene.kube.clone(), name.clone(), &r0, holder.into());
        let r0 = r0.clone();
        async move {
            let claim = store.claim(&r0).await.unwrap();
            if claim == Claim::Spend {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let renewed = SessionTokens {
                    access: Some(Token::new(format!("access-of-{holder}"))),
                    expires_at: None,
                    refresh: Token::new(format!("refresh-of-{holder}")),
                };
                store.keep(&renewed).await.unwrap();
            }
            (holder, claim)
        }
    };
    let (a, b) = tokio::join!(process("process-a"), process("process-b"));
    let spent: Vec<&str> = [&a, &b]
        .iter()
        .filter(|(_, claim)| *claim == Claim::Spend)
        .map(|(holder, _)| *holder)
        .collect();
    assert_eq!(spent.len(), 1, "{a:?} {b:?}");
    let (winner, loser) = if a.1 == Claim::Spend { (a, b) } else { (b, a) };
    let Claim::Newer(taken) = loser.1 else {
        panic!("the other process takes the winner's tokens: {loser:?}");
    };
    assert_eq!(
        taken.refresh,
        Token::new(format!("refresh-of-{}", winner.0))
    );
}

#[tokio::test]
async fn with_sessions_off_a_token_beside_the_refresh_token_is_used_as_it_is() {
    let (mut scene, session) = session_scene("session-off").await;
    scene.start_operator(&["--sessions=false"]);
    // Only a refresh token: stalled, saying what to do.
    scene.create(&backup(&scene, "refresh-only", SECRET)).await;
    let stalled = scene
        .wait_stalled("refresh-only", "InvalidCredentials")
        .await;
    let message = &condition(&stalled, "Stalled").unwrap().message;
    assert!(message.contains("--sessions=false"), "{message}");
    // An access token beside it: used as it is, no refresh ever sent, no session Secret.
    scene
        .put_secret(
            "both",
            &[
                ("refreshToken", &session.refresh_token),
                ("token", &session.access_token),
            ],
        )
        .await;
    scene.create(&backup(&scene, "with-token", "both")).await;
    scene.wait_ready("with-token").await;
    assert_eq!(scene.calls("POST", "/user/refresh").await, 0);
    assert!(session_secret(&scene, "both").await.is_none());
    assert!(session_secret(&scene, SECRET).await.is_none());
}

#[tokio::test]
async fn a_secret_of_another_kind_under_the_session_name_is_never_written_and_says_so() {
    let (mut scene, _session) = session_scene("session-taken").await;
    let name = format!("{SECRET}-session");
    scene.put_secret(&name, &[("note", "someone else's")]).await;
    scene.start_operator(&[]);
    scene.create(&backup(&scene, "blocked", SECRET)).await;
    let stalled = scene.wait_stalled("blocked", "SessionNotKept").await;
    let message = &condition(&stalled, "Stalled").unwrap().message;
    assert!(
        message.contains(&format!(
            "the Secret {}/{name} exists and is not a session Secret of the operator",
            scene.namespace
        )),
        "{message}"
    );
    let untouched = session_secret(&scene, SECRET).await.unwrap();
    assert_eq!(untouched.type_.as_deref(), Some("Opaque"));
    let data = untouched.data.unwrap();
    assert_eq!(data.keys().collect::<Vec<_>>(), ["note"]);
    assert_eq!(scene.calls("POST", "/user/refresh").await, 0);
}
