//! A Git server on loopback for the GitOps tests: Git's own smart HTTP (`git-http-backend`,
//! behind `tests/gitops/git-http.py`) serving one bare repository under the test's temporary
//! directory, and a working copy the test commits to and pushes from, as a person would.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::node::{root, run_ok};

/// The branch every commit lands on.
pub const BRANCH: &str = "main";

/// A running Git server with one repository, `config.git`. Stopped when dropped.
pub struct GitServer {
    child: Child,
    url: String,
    work: PathBuf,
    log: PathBuf,
}

impl GitServer {
    /// Creates the repository and serves it on 127.0.0.1 and a free port.
    pub fn start() -> Self {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join("gitops")
            .join(uuid::Uuid::new_v4().simple().to_string());
        let bare = dir.join("repositories/config.git");
        let work = dir.join("work");
        std::fs::create_dir_all(&bare).expect("repository directory");
        git(
            &bare,
            &["init", "--quiet", "--bare", "--initial-branch", BRANCH],
        );
        git(
            &dir,
            &["clone", "--quiet", "repositories/config.git", "work"],
        );
        git(&work, &["checkout", "--quiet", "-B", BRANCH]);
        let log = dir.join("server.log");
        let mut child = Command::new("python3")
            .arg(root().join("tests/gitops/git-http.py"))
            .arg(dir.join("repositories"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("the Git server starts");
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .expect("the Git server prints its address");
        let address = first
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("the Git server said {first:?}"))
            .to_owned();
        Self {
            child,
            url: format!("http://{address}/config.git"),
            work,
            log,
        }
    }

    /// The repository's URL, for a GitRepository.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The port the server listens on, on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.url
            .strip_prefix("http://127.0.0.1:")
            .and_then(|rest| rest.split('/').next())
            .and_then(|port| port.parse().ok())
            .expect("the URL names 127.0.0.1 and a port")
    }

    /// Writes each `(path, Some(text))` and removes each `(path, None)` (a file or a
    /// directory), commits with `message` and pushes; returns the commit's id.
    pub fn commit(&self, files: &[(&str, Option<&str>)], message: &str) -> String {
        for (path, text) in files {
            let path = self.work.join(path);
            match text {
                Some(text) => {
                    std::fs::create_dir_all(path.parent().unwrap()).expect("directory");
                    std::fs::write(&path, text).expect("file is written");
                }
                None if path.is_dir() => std::fs::remove_dir_all(&path).expect("removed"),
                None => std::fs::remove_file(&path).expect("removed"),
            }
        }
        self.push(message)
    }

    /// Copies the directory `from` (of this clone) to `to` in the repository, commits and
    /// pushes; returns the commit's id.
    pub fn commit_directory(&self, from: &Path, to: &str, message: &str) -> String {
        let target = self.work.join(to);
        std::fs::create_dir_all(target.parent().unwrap()).expect("directory");
        run_ok(
            Command::new("cp").arg("-a").arg(from).arg(&target),
            Duration::from_secs(30),
        );
        self.push(message)
    }

    fn push(&self, message: &str) -> String {
        git(&self.work, &["add", "--all"]);
        git(
            &self.work,
            &[
                "-c",
                "user.name=Platform Team",
                "-c",
                "user.email=platform@example.com",
                "commit",
                "--quiet",
                "--allow-empty",
                "--message",
                message,
            ],
        );
        git(&self.work, &["push", "--quiet", "origin", BRANCH]);
        git(&self.work, &["rev-parse", "HEAD"]).trim().to_owned()
    }
}

impl Drop for GitServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- Git server log {} ---\n{}",
                self.log.display(),
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }
}

fn git(dir: &Path, args: &[&str]) -> String {
    run_ok(
        Command::new("git").current_dir(dir).args(args),
        Duration::from_secs(30),
    )
}
