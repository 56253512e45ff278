//! What a tenant writes is checked before it is used: an API URL is refused unless allowed and
//! the answers of a server there are never quoted, names padded with blanks or spanning lines
//! are refused at admission, and each credentials problem is named for what it is.

use flashback_operator::crd::FlashbackRepository;
use kube::api::PostParams;
use serde_json::json;

use super::{point_at, put_secret, stalled_message, using};
use crate::support::hostile::{Behaviour, HostileServer};
use crate::support::scene::{Scene, condition};

#[tokio::test]
async fn a_tenants_api_url_is_refused_unless_allowed_and_answers_are_never_quoted() {
    let mut scene = Scene::with_operator("ssrf").await;
    let server = HostileServer::start(Behaviour::Body(
        r#"{"success":true,"repos":"LEAKED-PAYLOAD-7f3a"}"#,
    ))
    .await;
    point_at(&scene.kube, &scene.namespace, "elsewhere", &server.url).await;
    scene
        .create(&using(scene.mirror("media"), "elsewhere"))
        .await;
    let stalled = scene.wait_stalled("media", "ApiUrlNotAllowed").await;
    assert_eq!(
        stalled_message(&stalled),
        format!(
            "the key `apiUrl` of the credentials Secret {}/elsewhere names the host \
             127.0.0.1, which the operator is not allowed to call (its --allowed-api-hosts)",
            scene.namespace
        )
    );
    assert_eq!(server.requests(), 0, "the operator never called it");

    // Allowed, the host is called; what it answers is never copied anywhere.
    scene.operator().kill_hard();
    scene.start_operator(&["--allowed-api-hosts", "127.0.0.1"]);
    let failing = scene
        .wait_for("media", "failing on the answer", |r| {
            condition(r, "Ready").is_some_and(|c| c.reason == "RemoteUnavailable")
        })
        .await;
    assert!(server.requests() > 0);
    let message = &condition(&failing, "Ready").unwrap().message;
    assert_eq!(
        message,
        "could not list repositories, will retry: could not decode the answer of list_repos: \
         the body is not the JSON this call answers (line 1, column 45)"
    );
    let events = scene.events("media").await.join("\n");
    let output = scene.operator().output();
    for (place, text) in [("events", &events), ("operator output", &output)] {
        assert!(!text.contains("LEAKED-PAYLOAD"), "{place} quote the answer");
    }

    // An allowed host cannot send the operator on to another one.
    let target = HostileServer::start(Behaviour::Body(r#"{"success":true,"repos":[]}"#)).await;
    let to: &'static str = Box::leak(target.url.clone().into_boxed_str());
    let redirector = HostileServer::start(Behaviour::Redirect(to)).await;
    point_at(
        &scene.kube,
        &scene.namespace,
        "redirecting",
        &redirector.url,
    )
    .await;
    scene
        .create(&using(scene.mirror("redirected"), "redirecting"))
        .await;
    let refused = scene.wait_stalled("redirected", "SpecRejected").await;
    assert!(redirector.requests() > 0);
    assert_eq!(target.requests(), 0, "the redirect was not followed");
    assert!(
        stalled_message(&refused).contains("(HTTP 307)"),
        "{}",
        stalled_message(&refused)
    );
}

#[tokio::test]
async fn blank_padded_or_multiline_names_are_refused_at_admission() {
    let scene = Scene::new("admission").await;
    let message = |field: &str| {
        format!(
            "{field} must not start or end with whitespace, nor hold control characters such as a line break"
        )
    };
    let [primary, replica] = &scene.buckets;
    let cases = [
        ("blank name", json!({"name": "   "}), "name"),
        ("padded name", json!({"name": " padded "}), "name"),
        ("two-line name", json!({"name": "a\nb"}), "name"),
        (
            "padded workspace",
            json!({"workspaceId": " ws"}),
            "workspaceId",
        ),
        (
            "blank bucket id",
            json!({"buckets": [{"bucketId": primary, "master": true}, {"bucketId": "  "}]}),
            "bucketId",
        ),
        (
            "tabbed folder",
            json!({"buckets": [{"bucketId": primary, "master": true, "folder": "media\t"}, {"bucketId": replica}]}),
            "folder",
        ),
    ];
    for (case, spec, field) in cases {
        let mut repo = serde_json::to_value(scene.mirror("bad")).unwrap();
        for (key, value) in spec.as_object().unwrap() {
            repo["spec"][key] = value.clone();
        }
        let repo: FlashbackRepository = serde_json::from_value(repo).unwrap();
        let refused = scene
            .repos
            .create(&PostParams::default(), &repo)
            .await
            .expect_err(case);
        let text = refused.to_string();
        assert!(text.contains(&message(field)), "{case}: {text}");
    }
    // A name with inner spaces is a name like any other.
    let mut fine = scene.mirror("fine");
    fine.spec.name = Some("media backups".into());
    scene.create(&fine).await;
}

#[tokio::test]
async fn credentials_problems_are_named_for_what_they_are() {
    let mut scene = Scene::new("blame").await;
    put_secret(
        &scene.kube,
        &scene.namespace,
        "binary",
        &[("token", &[0xff, 0xfe, 0x00, 0x41])],
    )
    .await;
    let with_user = scene
        .emulator
        .base_url()
        .replace("http://", "http://me:pw@");
    put_secret(
        &scene.kube,
        &scene.namespace,
        "userinfo",
        &[
            ("token", scene.token.as_bytes()),
            ("apiUrl", with_user.as_bytes()),
        ],
    )
    .await;
    scene.control.reset_calls().await.unwrap();
    scene.start_operator(&["--allowed-api-hosts", "127.0.0.1"]);
    scene.create(&using(scene.mirror("binary"), "binary")).await;
    scene
        .create(&using(scene.mirror("userinfo"), "userinfo"))
        .await;

    let binary = scene.wait_stalled("binary", "TokenNotText").await;
    assert_eq!(
        stalled_message(&binary),
        format!(
            "the key `token` of the credentials Secret {}/binary is not UTF-8 text",
            scene.namespace
        )
    );
    let userinfo = scene.wait_stalled("userinfo", "InvalidApiUrl").await;
    assert_eq!(
        stalled_message(&userinfo),
        format!(
            "the key `apiUrl` of the credentials Secret {}/userinfo carries a user name or \
             password; the token goes in the key `token`",
            scene.namespace
        )
    );
    assert!(!scene.operator().output().contains("pw@"));
    assert_eq!(scene.control.calls().await.unwrap().total, 0);
}
