//! Over real HTTP, what the emulator refuses as the real service does (the folder rules of
//! NORMAL repositories, soft-deleted names, cloud credentials that fail their check,
//! workspaces that do not exist), and what it takes from the official client as that client
//! sends it (`workspaceId=undefined`).

use flashback_emulator::{
    EmulatorConfig, EmulatorControl, EmulatorProcess, Rules, RunningEmulator,
};
use reqwest::Method;
use serde_json::{Value, json};

const WS: &str = "ws-1";

struct Emulator {
    base_url: String,
    control: EmulatorControl,
    http: reqwest::Client,
    _running: Option<RunningEmulator>,
}

impl Emulator {
    async fn start() -> Self {
        let running = RunningEmulator::start(EmulatorConfig {
            tokens: vec!["t1".to_owned()],
            state_file: None,
            ..Default::default()
        })
        .await
        .unwrap();
        Self {
            base_url: running.base_url().to_owned(),
            control: running.control(),
            http: reqwest::Client::new(),
            _running: Some(running),
        }
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base_url))
            .bearer_auth("t1");
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.call(Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(Method::POST, path, Some(body)).await
    }

    async fn put(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(Method::PUT, path, Some(body)).await
    }

    async fn delete(&self, path: &str) -> (u16, Value) {
        self.call(Method::DELETE, path, None).await
    }

    async fn bucket(&self, name: &str, workspace: &str) -> String {
        let (status, answer) = self
            .post("/bucket", bucket_body(name, workspace, "AKIAGOOD"))
            .await;
        assert_eq!(status, 200, "{answer}");
        answer["bucketId"].as_str().unwrap().to_owned()
    }

    async fn repo(&self, name: &str, units: Value) -> (u16, Value) {
        self.post("/repo", repo_body(name, units)).await
    }
}

fn bucket_body(name: &str, workspace: &str, key: &str) -> Value {
    json!({"name": name, "bucket": format!("{name}-cloud"), "storageType": "S3",
           "key": key, "secret": "s3cr3t", "region": "eu-west-1", "workspaceId": workspace})
}

fn repo_body(name: &str, units: Value) -> Value {
    json!({"name": name, "storageType": "S3", "mode": "NORMAL", "workspaceId": WS,
           "repoBuckets": units})
}

/// `(status, error_code)` of an answer.
fn verdict(answer: &(u16, Value)) -> (u16, Option<&str>) {
    (answer.0, answer.1["error_code"].as_str())
}

#[tokio::test]
async fn a_normal_repository_keeps_its_buckets_folders_and_shares_none() {
    let emu = Emulator::start().await;
    let b1 = emu.bucket("b1", WS).await;
    let b2 = emu.bucket("b2", WS).await;
    let created = emu
        .repo(
            "docs",
            json!([{"bucketId": b1, "folder": "docs"}, {"bucketId": b2}]),
        )
        .await;
    assert_eq!(created.0, 200, "{}", created.1);
    let id = created.1["repoId"].as_str().unwrap().to_owned();
    let path = format!("/repo/{id}");

    let edited = emu
        .put(
            &path,
            repo_body(
                "docs",
                json!([{"bucketId": b1, "folder": "other"}, {"bucketId": b2}]),
            ),
        )
        .await;
    assert_eq!(
        verdict(&edited),
        (400, Some("NORMAL_UNIT_CANNOT_EDIT_FOLDER"))
    );
    assert_eq!(edited.1["success"], json!(false));
    let dropped = emu
        .put(
            &path,
            repo_body("docs", json!([{"bucketId": b1, "folder": "docs"}])),
        )
        .await;
    assert_eq!(
        verdict(&dropped),
        (400, Some("NORMAL_UNIT_FOLDER_CANNOT_DELETE"))
    );
    // The dry run gives the same verdict, and nothing changed.
    let (status, dry) = emu
        .post(
            &format!("/repo/{id}/validate"),
            json!({"repoId": id, "mode": "NORMAL",
                   "repoBuckets": [{"bucketId": b1, "folder": "other"}, {"bucketId": b2}]}),
        )
        .await;
    assert_eq!(
        (status, dry["error_code"].as_str()),
        (200, Some("NORMAL_UNIT_CANNOT_EDIT_FOLDER"))
    );
    let (_, listed) = emu.get(&format!("/repo?repoId={id}")).await;
    let folders: Vec<&str> = listed["repos"][0]["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|unit| unit["folder"].as_str().unwrap())
        .collect();
    assert_eq!(folders.len(), 2);
    assert!(
        folders.contains(&"docs") && folders.contains(&""),
        "{folders:?}"
    );

    // Adding a bucket, the others as they were, is an edit the rules allow.
    let b3 = emu.bucket("b3", WS).await;
    let grown = emu
        .put(
            &path,
            repo_body(
                "docs",
                json!([{"bucketId": b1, "folder": "docs"}, {"bucketId": b2, "folder": ""},
                       {"bucketId": b3, "folder": "new"}]),
            ),
        )
        .await;
    assert_eq!(grown.0, 200, "{}", grown.1);

    // Another repository may not use a folder of a bucket this one uses.
    let shared = emu
        .repo("copy", json!([{"bucketId": b1, "folder": "docs"}]))
        .await;
    assert_eq!(
        verdict(&shared),
        (409, Some("NORMAL_UNIT_FOLDER_ALREADY_USED"))
    );
    let beside = emu
        .repo("copy", json!([{"bucketId": b1, "folder": "copy"}]))
        .await;
    assert_eq!(beside.0, 200, "{}", beside.1);
}

#[tokio::test]
async fn a_soft_deleted_name_stays_taken_when_the_rules_say_so() {
    let emu = Emulator::start().await;
    assert_eq!(emu.control.rules().await.unwrap(), Rules::default());
    emu.control
        .set_rules(&Rules {
            soft_delete_keeps_names: true,
            ..Rules::default()
        })
        .await
        .unwrap();
    let (_, created) = emu.repo("media", json!([])).await;
    let id = created["repoId"].as_str().unwrap().to_owned();
    assert_eq!(emu.delete(&format!("/repo/{id}")).await.0, 200);
    let (_, listed) = emu.get("/repo").await;
    assert_eq!(
        listed["repos"],
        json!([]),
        "a deleted repository is not listed"
    );
    let again = emu.repo("media", json!([])).await;
    assert_eq!(verdict(&again), (409, Some("NAME_ALREADY_USED")));

    let bucket = emu.bucket("photos", WS).await;
    assert_eq!(emu.delete(&format!("/bucket/{bucket}")).await.0, 200);
    let (status, answer) = emu
        .post("/bucket", bucket_body("photos", WS, "AKIAGOOD"))
        .await;
    assert_eq!(
        (status, answer["error_code"].as_str()),
        (409, Some("NAME_ALREADY_USED"))
    );

    // With names freed, the same creates succeed.
    emu.control.set_rules(&Rules::default()).await.unwrap();
    assert_eq!(emu.repo("media", json!([])).await.0, 200);
    emu.bucket("photos", WS).await;
}

#[tokio::test]
async fn cloud_credentials_that_fail_their_check_are_refused_and_leave_nothing() {
    let emu = Emulator::start().await;
    emu.control
        .set_rules(&Rules {
            rejected_cloud_keys: vec!["AKIABAD".into()],
            ..Rules::default()
        })
        .await
        .unwrap();
    let refused = emu
        .post("/bucket", bucket_body("media", WS, "AKIABAD"))
        .await;
    assert_eq!(refused.0, 400);
    assert_eq!(refused.1["success"], json!(false));
    assert_eq!(
        refused.1.get("error_code"),
        None,
        "no code, as validate answers"
    );
    assert!(refused.1["message"].as_str().is_some_and(|m| !m.is_empty()));
    let (_, listed) = emu.get("/bucket").await;
    assert_eq!(listed["buckets"], json!([]), "nothing is registered");

    let id = emu.bucket("media", WS).await;
    let validate = format!("/bucket/{id}/validate");
    let body = json!({"bucket": "media-cloud"});
    assert_eq!(emu.post(&validate, body.clone()).await.0, 200);
    // The cloud revokes the credentials the bucket holds.
    emu.control
        .set_bucket_credentials(&id, false)
        .await
        .unwrap();
    let failed = emu.post(&validate, body.clone()).await;
    assert_eq!(failed.0, 400, "{}", failed.1);
    assert_eq!(failed.1["success"], json!(false));
    assert_eq!(failed.1.get("error_code"), None);
    // An update that keeps them is checked again and refused; the bucket stays as it was.
    let (status, _) = emu
        .put(
            &format!("/bucket/{id}"),
            json!({"name": "media", "bucket": "renamed", "storageType": "S3"}),
        )
        .await;
    assert_eq!(status, 400);
    let (_, listed) = emu.get("/bucket").await;
    assert_eq!(listed["buckets"][0]["bucket"], json!("media-cloud"));
    // A refused key is refused on an update too; new credentials that pass replace them.
    let bad = emu
        .put(
            &format!("/bucket/{id}"),
            bucket_body("media", WS, "AKIABAD"),
        )
        .await;
    assert_eq!(bad.0, 400);
    let good = emu
        .put(
            &format!("/bucket/{id}"),
            bucket_body("media", WS, "AKIANEW"),
        )
        .await;
    assert_eq!(good.0, 200, "{}", good.1);
    assert_eq!(emu.post(&validate, body).await.0, 200);
}

#[tokio::test]
async fn workspaces_are_listed_and_with_rules_a_write_elsewhere_is_refused() {
    let emu = Emulator::start().await;
    emu.bucket("b1", "ws-written").await;
    emu.get("/repo?workspaceId=ws-read").await;
    emu.get("/bucket?workspaceId=undefined").await;
    let (status, listed) = emu.get("/workspace").await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = listed["workspaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["ws-read", "ws-written"], "open: those calls named");
    let first = &listed["workspaces"][0];
    assert_eq!(first["name"], json!("ws-read"));
    assert!(first["orgId"].as_str().unwrap().starts_with("org-"));
    assert!(!first["orgId"].as_str().unwrap().contains("t1"));
    assert_eq!(first["users"], json!([]));

    emu.control
        .set_rules(&Rules {
            workspaces: Some(vec!["ws-1".into()]),
            ..Rules::default()
        })
        .await
        .unwrap();
    let (_, listed) = emu.get("/workspace").await;
    assert_eq!(listed["workspaces"].as_array().unwrap().len(), 1);
    assert_eq!(listed["workspaces"][0]["id"], json!("ws-1"));
    let elsewhere = emu
        .post("/bucket", bucket_body("b2", "ws-2", "AKIAGOOD"))
        .await;
    assert_eq!(verdict(&elsewhere), (404, Some("NOT_FOUND")));
    let mut repo = repo_body("r", json!([]));
    repo["workspaceId"] = json!("ws-2");
    assert_eq!(
        verdict(&emu.post("/repo", repo).await),
        (404, Some("NOT_FOUND"))
    );
    assert_eq!(emu.repo("r", json!([])).await.0, 200);
}

#[tokio::test]
async fn the_official_clients_undefined_workspace_lists_everything_and_health_answers() {
    let emu = Emulator::start().await;
    let a = emu.bucket("a", "ws-a").await;
    let b = emu.bucket("b", "ws-b").await;
    for path in ["/bucket?workspaceId=undefined", "/bucket"] {
        let (status, listed) = emu.get(path).await;
        assert_eq!(status, 200);
        let mut ids: Vec<&str> = listed["buckets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["id"].as_str().unwrap())
            .collect();
        ids.sort_unstable();
        let mut want = [a.as_str(), b.as_str()];
        want.sort_unstable();
        assert_eq!(ids, want, "{path}");
    }
    let (_, available) = emu.get("/bucket/available?workspaceId=undefined").await;
    assert_eq!(available.as_array().unwrap().len(), 2);
    let (_, repos) = emu.get("/repo?workspaceId=undefined").await;
    assert_eq!(repos["repos"], json!([]));

    let (status, health) = emu.get("/health").await;
    assert_eq!((status, health["success"].clone()), (200, json!(true)));
    let calls = emu.control.calls().await.unwrap();
    assert_eq!(calls.count("GET", "/health"), 1);
    assert_eq!(calls.count("GET", "/workspace"), 0);
}

#[tokio::test]
async fn the_binarys_flags_set_the_first_rules() {
    let emulator = EmulatorProcess::spawn_with_args(
        env!("CARGO_BIN_EXE_flashback-emulator"),
        &["t1"],
        None,
        &["--soft-delete-keeps-names", "--workspace", "ws-a,ws-b"],
    )
    .await
    .unwrap();
    assert_eq!(
        emulator.control().rules().await.unwrap(),
        Rules {
            soft_delete_keeps_names: true,
            workspaces: Some(vec!["ws-a".into(), "ws-b".into()]),
            ..Rules::default()
        }
    );
}
