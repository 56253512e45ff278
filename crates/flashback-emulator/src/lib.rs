//! A local, faithful emulator of the Flashback platform API (`flashback-api.md`), for
//! development, demos and tests.
//!
//! Each accepted token is its own organisation. State lives in memory behind one lock; with a
//! state file, a background task writes it atomically (temp file + rename) shortly after every
//! change, coalescing bursts, and once more on shutdown. The `/_emulator/` routes (no auth)
//! read call counters, inject faults, set quotas, rules and statistics and check repository
//! access keys; see
//! [`control`] for a typed client.

mod calls;
pub mod control;
mod faults;
mod routes;
pub mod rules;
mod sessions;
pub mod state;

use std::collections::HashSet;
use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;

pub use calls::{CallCount, CallStats, IN_FLIGHT_GRACE};
pub use control::{EmulatorControl, EmulatorProcess, Limits, ListedKey, RepoPatch, StatsPatch};
pub use faults::{FailNext, Faults, Latency, RandomErrors, RandomRateLimit, RouteFilter};
pub use rules::Rules;
pub use sessions::{
    DEFAULT_ACCESS_TOKEN_LIFETIME, DEFAULT_REFRESH_TOKEN_LIFETIME, IssuedSession, SessionFigures,
};

use self::calls::CallLog;
use self::faults::FaultState;
use self::sessions::Sessions;
use self::state::Store;

/// What the emulator accepts and where it keeps its state.
#[derive(Clone, Default)]
pub struct EmulatorConfig {
    /// Accepted bearer tokens; each is one organisation.
    pub tokens: Vec<String>,
    /// Where state survives restarts; memory only when `None`.
    pub state_file: Option<PathBuf>,
    /// People who can log in (`POST /user/login`): (email, password), each in the
    /// organisation of the first token.
    pub users: Vec<(String, String)>,
    /// How long the access tokens of sessions live ([`DEFAULT_ACCESS_TOKEN_LIFETIME`] when
    /// `None`).
    pub access_token_lifetime: Option<std::time::Duration>,
}

impl fmt::Debug for EmulatorConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmulatorConfig")
            .field("tokens", &format_args!("[{} hidden]", self.tokens.len()))
            .field("state_file", &self.state_file)
            .field("users", &format_args!("[{} hidden]", self.users.len()))
            .field("access_token_lifetime", &self.access_token_lifetime)
            .finish()
    }
}

/// Everything the handlers share.
pub(crate) struct AppState {
    store: RwLock<Store>,
    tokens: HashSet<String>,
    sessions: Mutex<Sessions>,
    faults: Mutex<FaultState>,
    limits: Mutex<Limits>,
    rules: Mutex<rules::RuleState>,
    calls: Mutex<CallLog>,
    /// Bumped after every change of `store`; the writer compares it with what it last wrote.
    generation: AtomicU64,
    changed: Notify,
}

impl AppState {
    fn faults(&self) -> MutexGuard<'_, FaultState> {
        self.faults.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn sessions(&self) -> MutexGuard<'_, Sessions> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn limits(&self) -> MutexGuard<'_, Limits> {
        self.limits.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn rules(&self) -> MutexGuard<'_, rules::RuleState> {
        self.rules.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn calls(&self) -> MutexGuard<'_, CallLog> {
        self.calls.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Called after the store changed (and its lock was released).
    fn changed(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.changed.notify_one();
    }

    /// The store's bytes and the generation they reflect.
    fn snapshot(&self) -> (u64, Vec<u8>) {
        let generation = self.generation.load(Ordering::SeqCst);
        let store = self.store.read().unwrap_or_else(|e| e.into_inner());
        (generation, store.to_bytes())
    }
}

/// Writes the state file whenever the store changed, until told to stop; then once more.
async fn persist(
    state: Arc<AppState>,
    path: PathBuf,
    mut stop: oneshot::Receiver<()>,
) -> anyhow::Result<()> {
    // Generation 0 is the store as loaded; `serve` bumps it once so the file is written at start.
    let mut written = 0;
    loop {
        let stopping = tokio::select! {
            () = state.changed.notified() => false,
            _ = &mut stop => true,
        };
        if state.generation.load(Ordering::SeqCst) != written {
            let (generation, bytes) = state.snapshot();
            let target = path.clone();
            let result =
                tokio::task::spawn_blocking(move || state::write_atomically(&target, &bytes))
                    .await
                    .context("the state writer panicked")?;
            match result {
                Ok(()) => written = generation,
                // Keep serving; the next change (or the shutdown) tries again.
                Err(error) if !stopping => {
                    tracing::error!(
                        error = format!("{error:#}"),
                        "could not write the state file"
                    );
                }
                Err(error) => return Err(error),
            }
        }
        if stopping {
            return Ok(());
        }
    }
}

/// Serves the emulator on `listener` until `shutdown` completes, then writes the state file
/// (if any) one last time.
pub async fn serve(
    listener: TcpListener,
    config: EmulatorConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    serve_with_rules(listener, config, Rules::default(), shutdown).await
}

/// [`serve`], with `rules` in force from the start (`PUT /_emulator/rules` changes them).
pub async fn serve_with_rules(
    listener: TcpListener,
    config: EmulatorConfig,
    rules: Rules,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        !config.tokens.is_empty(),
        "the emulator needs at least one token"
    );
    let mut store = match &config.state_file {
        Some(path) => Store::load(path)?,
        None => Store::default(),
    };
    store.ensure_orgs(&config.tokens);
    let mut sessions = Sessions::new(
        config
            .access_token_lifetime
            .unwrap_or(DEFAULT_ACCESS_TOKEN_LIFETIME),
    );
    for (email, password) in &config.users {
        sessions.add_user(email, password, &config.tokens[0]);
    }
    let state = Arc::new(AppState {
        store: RwLock::new(store),
        tokens: config.tokens.iter().cloned().collect(),
        sessions: Mutex::new(sessions),
        faults: Mutex::new(FaultState::default()),
        limits: Mutex::new(Limits::default()),
        rules: Mutex::new(rules::RuleState {
            rules,
            ..rules::RuleState::default()
        }),
        calls: Mutex::new(CallLog::default()),
        generation: AtomicU64::new(0),
        changed: Notify::new(),
    });
    let writer = config.state_file.clone().map(|path| {
        // Write the file once at start, so a fresh state file exists as soon as we listen.
        state.changed();
        let (stop, stopped) = oneshot::channel();
        (stop, tokio::spawn(persist(state.clone(), path, stopped)))
    });

    let served = axum::serve(listener, routes::router(state))
        .with_graceful_shutdown(shutdown)
        .await
        .context("serving the emulator");

    if let Some((stop, writer)) = writer {
        let _ = stop.send(());
        writer.await.context("the state writer panicked")??;
    }
    served
}

/// An emulator running inside this process, on a free loopback port.
///
/// Dropping it stops the server; [`RunningEmulator::shutdown`] also waits for the last state
/// write.
pub struct RunningEmulator {
    base_url: String,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl RunningEmulator {
    /// Starts an emulator on `127.0.0.1:0`.
    pub async fn start(config: EmulatorConfig) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding 127.0.0.1:0")?;
        let base_url = format!("http://{}", listener.local_addr()?);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, config, async {
            let _ = stopped.await;
        }));
        Ok(Self {
            base_url,
            stop: Some(stop),
            task,
        })
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// A control client for this emulator.
    pub fn control(&self) -> EmulatorControl {
        EmulatorControl::new(&self.base_url).expect("our own URL is valid")
    }

    /// Stops the server and waits until the state file is written.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task)
            .await
            .context("the emulator task panicked")?
    }
}

impl Drop for RunningEmulator {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
