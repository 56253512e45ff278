//! The Flashback client against the emulator, over real HTTP on loopback. No cluster: `make unit`
//! runs these (`client::`). One module per topic; here is what more than one of them uses.

mod emulator;
mod endpoints;
mod errors;
mod keys;
mod retry;
mod session;
mod workspaces;

use flashback_client::{FlashbackClient, RepoFilter};

async fn only_repo(client: &FlashbackClient, id: &str) -> Option<flashback_client::Repo> {
    let mut repos = client.list_repos(&RepoFilter::repo(id)).await.unwrap();
    assert!(repos.len() <= 1);
    repos.pop()
}
