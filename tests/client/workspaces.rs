//! `GET /workspace` through the client: what the operator checks a spec's `workspaceId`
//! against before a create.

use flashback_emulator::Rules;

use crate::support::{client, emulator};

#[tokio::test]
async fn the_workspaces_of_the_organisation_are_listed_by_id() {
    let emu = emulator(&["t1"]).await;
    let api = client(emu.base_url(), "t1");
    emu.control()
        .set_rules(&Rules {
            workspaces: Some(vec!["ws-a".into(), "ws-b".into()]),
            ..Rules::default()
        })
        .await
        .unwrap();
    let listed = api.list_workspaces().await.unwrap();
    let ids: Vec<&str> = listed.iter().map(|w| w.id.as_str()).collect();
    assert_eq!(ids, ["ws-a", "ws-b"]);
    assert_eq!(listed[0].name.as_deref(), Some("ws-a"));
    let calls = emu.control().calls().await.unwrap();
    assert_eq!(calls.count("GET", "/workspace"), 1);
}
