//! Test-only hooks: named steps where an end-to-end test stops the operator, to kill it exactly
//! there. A failpoint is armed by the environment variable `FLASHBACK_FAILPOINT` (its name,
//! e.g. `pause-after-remote-create`), never by a flag or a setting, and exists only in builds
//! with the `failpoints` feature (on by default for `cargo test`; the image is built without
//! it, so a released operator cannot be told to hang).

/// A step where a test can stop the operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failpoint {
    /// After the remote create answered, before the status records it.
    PauseAfterRemoteCreate,
    /// After a repository key was created, before the Secret holds it.
    PauseAfterKeyCreate,
    /// After a bucket was registered, before the status records it.
    PauseAfterBucketCreate,
    /// After a session refresh answered, before its new refresh token is kept.
    PauseBeforeSessionKept,
    /// Right after a session's new refresh token was kept.
    PauseAfterSessionKept,
}

impl Failpoint {
    /// The name `FLASHBACK_FAILPOINT` gives, and the log line says.
    pub fn name(self) -> &'static str {
        match self {
            Failpoint::PauseAfterRemoteCreate => "pause-after-remote-create",
            Failpoint::PauseAfterKeyCreate => "pause-after-key-create",
            Failpoint::PauseAfterBucketCreate => "pause-after-bucket-create",
            Failpoint::PauseBeforeSessionKept => "pause-before-session-kept",
            Failpoint::PauseAfterSessionKept => "pause-after-session-kept",
        }
    }
}

/// Stops here for good when this failpoint is armed; returns at once otherwise.
#[cfg(feature = "failpoints")]
pub async fn pause_at(point: Failpoint) {
    static ARMED: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let armed = ARMED.get_or_init(|| std::env::var("FLASHBACK_FAILPOINT").ok());
    if armed.as_deref() == Some(point.name()) {
        tracing::info!("failpoint {} reached", point.name());
        std::future::pending::<()>().await;
    }
}

/// Without the `failpoints` feature there is nothing to arm.
#[cfg(not(feature = "failpoints"))]
pub async fn pause_at(_point: Failpoint) {}
