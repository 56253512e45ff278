//! `GET /workspace`: the workspaces a token's organisation has, in the shape of the official
//! TypeScript client's `GetWorkspacesResponse` (`{success, workspaces: [{id, name, orgId,
//! users}]}`). Only the id and name are read.

use serde::Deserialize;

/// A workspace of the organisation.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Workspace {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct WorkspacesBody {
    // Required: a success body without its list must not read as "no workspace exists".
    pub workspaces: Vec<Workspace>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listing_reads_ids_and_names_and_ignores_the_rest() {
        let body: WorkspacesBody = serde_json::from_value(serde_json::json!({
            "success": true,
            "workspaces": [
                {"id": "ws-1", "name": "Media", "orgId": "o", "users": [{"userId": "u"}]},
                {"id": "ws-2"}
            ]
        }))
        .unwrap();
        assert_eq!(
            body.workspaces,
            [
                Workspace {
                    id: "ws-1".into(),
                    name: Some("Media".into())
                },
                Workspace {
                    id: "ws-2".into(),
                    name: None
                }
            ]
        );
        assert!(
            serde_json::from_value::<WorkspacesBody>(serde_json::json!({"success": true})).is_err()
        );
    }
}
