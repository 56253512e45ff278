//! Which Flashback credentials an object uses: a Secret in its own namespace, or the
//! operator-wide default. Reading a Secret's keys is a pure function; fetching it is not.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;

use flashback_client::Url;
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};

use crate::crd::{FlashbackBucket, FlashbackRepository, SecretReference};
pub use crate::settings::SecretName;
use crate::settings::Settings;
use flashback_client::Token;

/// The Secret key holding an API access token.
pub const TOKEN_KEY: &str = "token";
/// The Secret key holding a refresh token, which the operator renews a session with.
pub const REFRESH_TOKEN_KEY: &str = "refreshToken";
/// The optional Secret key holding the API base URL.
pub const API_URL_KEY: &str = "apiUrl";

/// What an object authenticates with. The tokens never leave [`Token`]'s redaction.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Credentials {
    pub api_url: Url,
    /// The access token of the key `token`: sent until it is refused (or, with a session,
    /// expires).
    pub token: Option<Token>,
    /// With a refresh token, the session the operator keeps for the Secret.
    pub session: Option<SessionOrigin>,
}

/// Where a session begins: the Secret and the refresh token it holds. Its renewals are kept
/// beside it ([`crate::controller::session`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SessionOrigin {
    pub secret: SecretName,
    pub refresh_token: Token,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("api_url", &self.api_url.as_str())
            .field("token", &self.token)
            .field(
                "session_of",
                &self.session.as_ref().map(|s| s.secret.to_string()),
            )
            .finish()
    }
}

/// Where the operator may send a credential's token: a view of two settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiUrls<'a> {
    /// For credentials that name no URL (`--api-url`).
    pub default: &'a Url,
    /// Hosts (`host` for any port, `host:port`, or `*` for any) that a tenant's Secret may
    /// name in `apiUrl` (`--allowed-api-hosts`). Empty: a tenant's Secret may not name one.
    /// The operator's default Secret is the operator's own and may always name one.
    pub allowed_hosts: &'a [String],
}

impl<'a> ApiUrls<'a> {
    pub fn of(settings: &'a Settings) -> Self {
        Self {
            default: &settings.api_url,
            allowed_hosts: &settings.allowed_api_hosts,
        }
    }

    /// Whether a tenant's Secret may send the operator to `url`.
    pub fn allows(&self, url: &Url) -> bool {
        let Some(host) = url.host_str() else {
            return false;
        };
        let with_port = url
            .port_or_known_default()
            .map(|port| format!("{host}:{port}"));
        self.allowed_hosts.iter().any(|allowed| {
            allowed == "*"
                || allowed.eq_ignore_ascii_case(host)
                || with_port
                    .as_deref()
                    .is_some_and(|hp| allowed.eq_ignore_ascii_case(hp))
        })
    }
}

/// Why an object has no usable credentials. Each is for a person to fix.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum CredentialsError {
    #[error("the credentials Secret {0} does not exist")]
    SecretNotFound(SecretName),
    #[error(
        "the credentials Secret {0} has neither a non-empty key `token` nor `refreshToken` \
         (`flashback-operator login` writes a refreshToken)"
    )]
    TokenMissing(SecretName),
    #[error("the key `{1}` of the credentials Secret {0} is not UTF-8 text")]
    TokenNotText(SecretName, &'static str),
    #[error("the key `apiUrl` of the credentials Secret {0} {1}")]
    InvalidApiUrl(SecretName, &'static str),
    #[error(
        "the key `apiUrl` of the credentials Secret {0} names the host {1}, which the operator \
         is not allowed to call (its --allowed-api-hosts)"
    )]
    ApiUrlNotAllowed(SecretName, String),
    #[error(
        "the Secret {0} is a session Secret the operator keeps for another Secret; name that \
         one in credentialsSecretRef"
    )]
    SessionSecretNamed(SecretName),
    #[error("the operator may not read the credentials Secret {0}: grant it `get` on that Secret")]
    SecretForbidden(SecretName),
    #[error(
        "no credentialsSecretRef is set and the operator has no default credentials \
         (--default-credentials-secret)"
    )]
    NoDefault,
}

/// An object whose Flashback token comes from a Secret of its own namespace, or from the
/// operator's default credentials.
pub trait Credentialed {
    fn namespace_of(&self) -> Option<String>;
    fn credentials_secret_ref(&self) -> Option<&SecretReference>;
}

impl Credentialed for FlashbackRepository {
    fn namespace_of(&self) -> Option<String> {
        self.metadata.namespace.clone()
    }

    fn credentials_secret_ref(&self) -> Option<&SecretReference> {
        self.spec.credentials_secret_ref.as_ref()
    }
}

impl Credentialed for FlashbackBucket {
    fn namespace_of(&self) -> Option<String> {
        self.metadata.namespace.clone()
    }

    fn credentials_secret_ref(&self) -> Option<&SecretReference> {
        self.spec.credentials_secret_ref.as_ref()
    }
}

impl<T: Credentialed> Credentialed for std::sync::Arc<T> {
    fn namespace_of(&self) -> Option<String> {
        self.as_ref().namespace_of()
    }

    fn credentials_secret_ref(&self) -> Option<&SecretReference> {
        self.as_ref().credentials_secret_ref()
    }
}

/// The Secret an object's credentials come from.
pub fn secret_for(
    object: &impl Credentialed,
    default: Option<&SecretName>,
) -> Result<SecretName, CredentialsError> {
    match (object.credentials_secret_ref(), default) {
        (Some(reference), _) => Ok(SecretName {
            namespace: object.namespace_of().unwrap_or_default(),
            name: reference.name.clone(),
        }),
        (None, Some(default)) => Ok(default.clone()),
        (None, None) => Err(CredentialsError::NoDefault),
    }
}

/// Reads the token and API URL out of a Secret. `trusted` is true for the operator's own
/// default Secret, whose `apiUrl` needs no allowance.
pub fn from_secret(
    name: &SecretName,
    secret: &Secret,
    urls: ApiUrls<'_>,
    trusted: bool,
) -> Result<Credentials, CredentialsError> {
    // Its tokens are the operator's to spend, for the Secret it keeps them for: a second
    // reader would spend them too, and end that session.
    if secret.type_.as_deref() == Some(crate::controller::session::SESSION_SECRET_TYPE) {
        return Err(CredentialsError::SessionSecretNamed(name.clone()));
    }
    // `Ok(None)`: absent or blank; `Err(())`: present but not text.
    let value = |key: &str| -> Result<Option<String>, ()> {
        let Some(bytes) = secret.data.as_ref().and_then(|data| data.get(key)) else {
            return Ok(None);
        };
        let text = std::str::from_utf8(&bytes.0).map_err(|_| ())?.trim();
        Ok((!text.is_empty()).then(|| text.to_string()))
    };
    let token =
        value(TOKEN_KEY).map_err(|()| CredentialsError::TokenNotText(name.clone(), TOKEN_KEY))?;
    let refresh_token = value(REFRESH_TOKEN_KEY)
        .map_err(|()| CredentialsError::TokenNotText(name.clone(), REFRESH_TOKEN_KEY))?;
    if token.is_none() && refresh_token.is_none() {
        return Err(CredentialsError::TokenMissing(name.clone()));
    }
    let invalid = |why| CredentialsError::InvalidApiUrl(name.clone(), why);
    let api_url = match value(API_URL_KEY).map_err(|()| invalid("is not UTF-8 text"))? {
        Some(text) => {
            let url = Url::parse(&text).map_err(|_| invalid("is not a URL"))?;
            if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
                return Err(invalid("is not an http:// or https:// URL"));
            }
            if !url.username().is_empty() || url.password().is_some() {
                return Err(invalid(
                    "carries a user name or password; the token goes in the key `token`",
                ));
            }
            if !trusted && !urls.allows(&url) {
                let host = url.host_str().unwrap_or_default().to_string();
                return Err(CredentialsError::ApiUrlNotAllowed(name.clone(), host));
            }
            url
        }
        None => urls.default.clone(),
    };
    Ok(Credentials {
        api_url,
        token: token.map(Token::new),
        session: refresh_token.map(|refresh| SessionOrigin {
            secret: name.clone(),
            refresh_token: Token::new(refresh),
        }),
    })
}

/// What each Secret's credentials were when last read, so that a Secret is read once per
/// change rather than once per reconcile. A Secret watch forgets an entry when that Secret
/// changes. So that a watch that lists afresh (at start, after a disconnect) can tell a Secret
/// changed meanwhile, whose change it did not report one by one, the cache keeps for each
/// watch the versions reads returned since that watch last reported the Secret (see
/// [`CredentialsCache::differs`]). Only answers that a Secret event can change are kept: a
/// Kubernetes error (worth a retry) and a refused read (fixed by RBAC, which no Secret event
/// announces) are not.
#[derive(Default)]
pub struct CredentialsCache {
    state: std::sync::Mutex<CacheState>,
}

type Read = Result<Credentials, CredentialsError>;

/// What a Secret held when it was read, and its resourceVersion then (`None`: it did not exist).
struct Entry {
    read: Read,
    version: Option<String>,
}

/// A Secret watch the cache keeps versions for (see [`CredentialsCache::watch`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchId(usize);

/// One Secret watch: the Secrets its listings cover, and the versions of them that reads
/// returned since it last reported each.
struct Watched {
    scope: Box<dyn Fn(&SecretName) -> bool + Send + Sync>,
    used: HashMap<SecretName, BTreeSet<Option<String>>>,
}

/// A Secret being read, and what happened to it meanwhile.
#[derive(Default)]
struct Reading {
    /// Reads in flight.
    readers: usize,
    /// Changes seen: a read that a change overtook is not kept.
    changes: u64,
    /// The versions listings showed (`None`: not listed). A listing compares with what reads
    /// returned, and a read still in flight has returned nothing yet: one answered with
    /// another version may be from before the listing, which the watch goes on from without
    /// reporting what came between, so it is read again.
    listed: Vec<Option<String>>,
}

#[derive(Default)]
struct CacheState {
    entries: HashMap<SecretName, Entry>,
    /// Secrets being read. Only Secrets being read have an entry, so churn elsewhere costs
    /// nothing.
    reading: HashMap<SecretName, Reading>,
    /// Moves when a Secret watch lists afresh: a change made while it was away was not
    /// reported, so a read that spans a listing is neither kept nor trusted.
    listings: u64,
    /// Per watch, the versions (`None`: it did not exist) of each Secret in its scope that
    /// reads returned since that watch last reported the Secret, whether or not the read was
    /// kept: a reconcile acted on each, so the watch's next listing must report the Secret
    /// when it shows another version. Per watch, because each watch wakes only its own kind:
    /// the repository and bucket controllers each watch Secrets, and when one of them reported
    /// a change (and its objects read the new version) the other, listing late, must still
    /// wake the objects that acted on the old one. (With one record for all, the first watch
    /// to see a change erased what the other compared its listing with, and a repository
    /// stalled on a wrong token was never looked at again.)
    watches: Vec<Watched>,
}

impl CacheState {
    /// A read of `name` returned `version`, and a reconcile acts on it.
    fn used(&mut self, name: &SecretName, version: &Option<String>) {
        for watched in &mut self.watches {
            if (watched.scope)(name) {
                let versions = watched.used.entry(name.clone()).or_default();
                versions.insert(version.clone());
            }
        }
    }
}

impl CredentialsCache {
    /// The credentials of an object: from the cache, or read (and then kept).
    pub async fn resolve(
        &self,
        client: &Client,
        object: &impl Credentialed,
        settings: &Settings,
    ) -> Result<Result<Credentials, CredentialsError>, kube::Error> {
        let default = settings.default_credentials_secret.as_ref();
        let name = match secret_for(object, default) {
            Ok(name) => name,
            Err(problem) => return Ok(Err(problem)),
        };
        let urls = ApiUrls::of(settings);
        self.read_through(&name, || read(client, &name, default, urls))
            .await
    }

    /// The credentials in the Secret `name`: from the cache, or from `read` (and then kept).
    async fn read_through<F, Fut>(
        &self,
        name: &SecretName,
        mut read: F,
    ) -> Result<Read, kube::Error>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<(Read, Option<String>), kube::Error>>,
    {
        // A read that spans the start of a listing may be answered from before a change the
        // watch never reported: it is read again, once, and only a read that spanned none is
        // kept.
        let mut again = true;
        loop {
            let before = {
                let mut state = self.lock();
                if let Some(known) = state.entries.get(name) {
                    return Ok(known.read.clone());
                }
                let listings = state.listings;
                let reading = state.reading.entry(name.clone()).or_default();
                reading.readers += 1;
                (listings, reading.changes, reading.listed.len())
            };
            let read = read().await;
            let mut state = self.lock();
            let (changes, listed) = match state.reading.get_mut(name) {
                Some(reading) => {
                    let listed = reading.listed.get(before.2..).unwrap_or_default();
                    let seen = (reading.changes, listed.to_vec());
                    if reading.readers <= 1 {
                        state.reading.remove(name);
                    } else {
                        reading.readers -= 1;
                    }
                    seen
                }
                None => Default::default(),
            };
            let (read, version) = read?;
            // A listing showed the Secret at another version meanwhile (see `Reading::listed`).
            if listed.iter().any(|shown| *shown != version) {
                continue;
            }
            let spanned_listing = state.listings != before.0;
            if spanned_listing && again {
                again = false;
                continue;
            }
            state.used(name, &version);
            let unchanged = !spanned_listing && changes == before.1;
            if unchanged && !matches!(read, Err(CredentialsError::SecretForbidden(_))) {
                let entry = Entry {
                    read: read.clone(),
                    version,
                };
                state.entries.insert(name.clone(), entry);
            }
            return Ok(read);
        }
    }

    /// A Secret watch whose listings cover the Secrets `scope` accepts: from now on the cache
    /// keeps, for it, the versions reads return of those Secrets. Made before the watch's
    /// controller reconciles anything (a read made before is known to it only while kept).
    pub fn watch(&self, scope: impl Fn(&SecretName) -> bool + Send + Sync + 'static) -> WatchId {
        let mut state = self.lock();
        state.watches.push(Watched {
            scope: Box::new(scope),
            used: HashMap::new(),
        });
        WatchId(state.watches.len() - 1)
    }

    /// A Secret watch lists afresh: reads in flight are not kept.
    pub fn listing_started(&self) {
        self.lock().listings += 1;
    }

    /// A listing of `watch` ended: the Secrets of its scope that the cache holds as existing
    /// (kept, or read since the watch last reported them) and that `listed` does not name. A
    /// read of such a Secret in flight is read again if answered with a version.
    pub fn unlisted(&self, watch: WatchId, listed: &HashSet<SecretName>) -> Vec<SecretName> {
        let mut state = self.lock();
        let state = &mut *state;
        let Some(watched) = state.watches.get(watch.0) else {
            return Vec::new();
        };
        for (name, reading) in &mut state.reading {
            if (watched.scope)(name) && !listed.contains(name) {
                reading.listed.push(None);
            }
        }
        let held = state
            .entries
            .iter()
            .filter(|(name, entry)| entry.version.is_some() && (watched.scope)(name))
            .map(|(name, _)| name);
        let used = watched
            .used
            .iter()
            .filter(|(_, versions)| versions.iter().any(Option::is_some))
            .map(|(name, _)| name);
        held.chain(used)
            .filter(|name| !listed.contains(*name))
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    }

    /// Keeps only the Secrets `keep` accepts (those some object still names); returns how
    /// many are left. What objects no longer name would otherwise pile up.
    pub fn retain(&self, keep: impl Fn(&SecretName) -> bool) -> usize {
        let mut state = self.lock();
        state.entries.retain(|name, _| keep(name));
        for watched in &mut state.watches {
            watched.used.retain(|name, _| keep(name));
        }
        state.entries.len()
    }

    /// Whether the Secret `name`, now at `version` (`None`: gone) in a listing of `watch`,
    /// differs from what the cache holds of it, or from a version a read returned since
    /// `watch` last reported it. A Secret nobody read has nothing stale to forget; one being
    /// read right now may be answered from before the change, so that read is not kept, and
    /// is read again if it was answered with another version.
    pub fn differs(&self, watch: WatchId, name: &SecretName, version: Option<&str>) -> bool {
        let mut state = self.lock();
        if let Some(reading) = state.reading.get_mut(name) {
            reading.changes += 1;
            reading.listed.push(version.map(str::to_string));
        }
        let held = state
            .entries
            .get(name)
            .is_some_and(|entry| entry.version.as_deref() != version);
        let used = state
            .watches
            .get(watch.0)
            .and_then(|watched| watched.used.get(name))
            .is_some_and(|used| used.iter().any(|used| used.as_deref() != version));
        held || used
    }

    /// Remembers that the Secret `name` was read at `version`, as a read would.
    #[cfg(test)]
    pub fn remember(&self, name: SecretName, version: Option<&str>) {
        let version = version.map(str::to_string);
        let mut state = self.lock();
        state.used(&name, &version);
        let entry = Entry {
            read: Err(CredentialsError::NoDefault),
            version,
        };
        state.entries.insert(name, entry);
    }

    /// Records that a read returned the Secret `name` at `version` without keeping it, as a
    /// read that a change overtook does.
    #[cfg(test)]
    pub fn used_unkept(&self, name: SecretName, version: Option<&str>) {
        self.lock().used(&name, &version.map(str::to_string));
    }

    /// `watch` reported that the Secret `name` changed, and wakes the objects that use it:
    /// read it again next time, and compare its next listing from here.
    pub fn forget(&self, watch: WatchId, name: &SecretName) {
        let mut state = self.lock();
        state.entries.remove(name);
        if let Some(watched) = state.watches.get_mut(watch.0) {
            watched.used.remove(name);
        }
        if let Some(reading) = state.reading.get_mut(name) {
            reading.changes += 1;
        }
    }

    /// How many Secrets are remembered.
    pub fn remembered(&self) -> usize {
        self.lock().entries.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CacheState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Reads the Secret `name` and the credentials in it, with the Secret's resourceVersion.
async fn read(
    client: &Client,
    name: &SecretName,
    default: Option<&SecretName>,
    urls: ApiUrls<'_>,
) -> Result<(Read, Option<String>), kube::Error> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &name.namespace);
    Ok(match secrets.get_opt(&name.name).await {
        Ok(Some(secret)) => (
            from_secret(name, &secret, urls, Some(name) == default),
            secret.metadata.resource_version,
        ),
        Ok(None) => (Err(CredentialsError::SecretNotFound(name.clone())), None),
        Err(kube::Error::Api(status)) if status.is_forbidden() => {
            (Err(CredentialsError::SecretForbidden(name.clone())), None)
        }
        Err(error) => return Err(error),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::ByteString;

    use super::*;
    use crate::fixtures;

    fn secret(data: &[(&str, &str)]) -> Secret {
        Secret {
            data: Some(
                data.iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                    .collect::<BTreeMap<_, _>>(),
            ),
            ..Secret::default()
        }
    }

    fn default_url() -> Url {
        Url::parse("https://api.example").unwrap()
    }

    /// The operator's URLs with `--api-url https://api.example` and these allowed hosts
    /// (leaked: a test's settings live as long as the test process).
    fn urls(allowed: &[&str]) -> ApiUrls<'static> {
        let mut flags = vec!["--api-url", "https://api.example"];
        if !allowed.is_empty() {
            flags.push("--allowed-api-hosts");
        }
        let joined = allowed.join(",");
        flags.push(&joined);
        if allowed.is_empty() {
            flags.pop();
        }
        let settings = Box::leak(Box::new(crate::settings::tests::from_flags(&flags)));
        ApiUrls::of(settings)
    }

    fn name() -> SecretName {
        "team-a/flashback-token".parse().unwrap()
    }

    #[test]
    fn a_refresh_token_alone_or_with_a_token_makes_a_session_of_the_secret() {
        let alone = from_secret(
            &name(),
            &secret(&[("refreshToken", "r0")]),
            urls(&[]),
            false,
        )
        .unwrap();
        assert_eq!(alone.token, None);
        assert_eq!(
            alone.session,
            Some(SessionOrigin {
                secret: name(),
                refresh_token: Token::new("r0"),
            })
        );
        let both = from_secret(
            &name(),
            &secret(&[("refreshToken", "r0"), ("token", "a0")]),
            urls(&[]),
            false,
        )
        .unwrap();
        assert_eq!(both.token, Some(Token::new("a0")));
        assert!(both.session.is_some());
        assert_eq!(
            from_secret(
                &name(),
                &secret(&[("apiUrl", "https://api.example")]),
                urls(&[]),
                false
            ),
            Err(CredentialsError::TokenMissing(name()))
        );
    }

    #[test]
    fn a_session_secret_named_as_credentials_is_refused() {
        let mut kept = secret(&[("refreshToken", "r5")]);
        kept.type_ = Some(crate::controller::session::SESSION_SECRET_TYPE.into());
        assert_eq!(
            from_secret(&name(), &kept, urls(&[]), false),
            Err(CredentialsError::SessionSecretNamed(name()))
        );
    }

    #[test]
    fn the_object_reference_wins_and_stays_in_its_namespace() {
        let repo = fixtures::repo("team-a", "media");
        let default = "flashback-system/default".parse().unwrap();
        assert_eq!(secret_for(&repo, Some(&default)).unwrap(), name());

        let mut without_ref = repo.clone();
        without_ref.spec.credentials_secret_ref = None;
        assert_eq!(secret_for(&without_ref, Some(&default)).unwrap(), default);
        assert_eq!(
            secret_for(&without_ref, None),
            Err(CredentialsError::NoDefault)
        );
    }

    #[test]
    fn token_and_optional_url_are_read() {
        let credentials =
            from_secret(&name(), &secret(&[("token", "t0k\n")]), urls(&[]), false).unwrap();
        assert_eq!(credentials.api_url, default_url());
        assert_eq!(credentials.token, Some(Token::new("t0k".to_string())));
        assert_eq!(credentials.session, None);

        let with_url = secret(&[("token", "t0k"), ("apiUrl", "http://127.0.0.1:9")]);
        let credentials = from_secret(&name(), &with_url, urls(&["127.0.0.1"]), false).unwrap();
        assert_eq!(credentials.api_url.as_str(), "http://127.0.0.1:9/");
    }

    #[test]
    fn a_tenants_api_url_is_used_only_on_an_allowed_host() {
        let with_url = secret(&[("token", "t0k"), ("apiUrl", "http://127.0.0.1:9/api")]);
        let refused = CredentialsError::ApiUrlNotAllowed(name(), "127.0.0.1".into());
        for allowed in [&[][..], &["127.0.0.2"], &["127.0.0.1:10"]] {
            assert_eq!(
                from_secret(&name(), &with_url, urls(allowed), false),
                Err(refused.clone()),
                "{allowed:?}"
            );
        }
        for allowed in [&["127.0.0.1"][..], &["127.0.0.1:9"], &["x", "*"]] {
            assert!(
                from_secret(&name(), &with_url, urls(allowed), false).is_ok(),
                "{allowed:?}"
            );
        }
        // The operator's own default Secret needs no allowance.
        assert!(from_secret(&name(), &with_url, urls(&[]), true).is_ok());
        assert!(refused.to_string().contains("--allowed-api-hosts"));
    }

    #[test]
    fn a_bad_api_url_says_what_is_wrong_with_it() {
        let cases = [
            ("not a url", "is not a URL"),
            ("ftp://127.0.0.1/", "is not an http:// or https:// URL"),
            (
                "http://user:pw@127.0.0.1/",
                "carries a user name or password; the token goes in the key `token`",
            ),
        ];
        for (url, why) in cases {
            let problem = from_secret(
                &name(),
                &secret(&[("token", "t0k"), ("apiUrl", url)]),
                urls(&["*"]),
                false,
            )
            .unwrap_err();
            assert_eq!(
                problem,
                CredentialsError::InvalidApiUrl(name(), why),
                "{url}"
            );
            assert!(!problem.to_string().contains("pw"), "{problem}");
        }
    }

    #[test]
    fn a_token_that_is_not_text_is_named_as_such() {
        let mut broken = secret(&[]);
        broken.data = Some(BTreeMap::from([(
            "token".to_string(),
            ByteString(vec![0xff, 0xfe, b'x']),
        )]));
        assert_eq!(
            from_secret(&name(), &broken, urls(&[]), false),
            Err(CredentialsError::TokenNotText(name(), TOKEN_KEY))
        );
    }

    #[test]
    fn a_missing_or_empty_token_is_named_without_its_value() {
        for data in [vec![], vec![("token", "  ")], vec![("apiUrl", "http://x")]] {
            let problem = from_secret(&name(), &secret(&data), urls(&[]), false).unwrap_err();
            assert_eq!(problem, CredentialsError::TokenMissing(name()));
            assert!(problem.to_string().contains("team-a/flashback-token"));
        }
    }

    #[test]
    fn debug_output_hides_the_token() {
        let credentials = from_secret(
            &name(),
            &secret(&[("token", "very-secret")]),
            urls(&[]),
            false,
        )
        .unwrap();
        assert!(!format!("{credentials:?}").contains("very-secret"));
    }

    /// A read in flight while a watch lists: answered at version 1, while the Secret moved on
    /// and the listing, from which the watch goes on, showed it at version 2 or not at all.
    /// The listing had nothing to compare with, so it reported nothing; the read, not kept
    /// but acted on, left the object on version 1 with nothing to wake it. It is read again.
    #[tokio::test]
    async fn a_read_a_listing_overtook_is_read_again() {
        let at_one = || {
            (
                Err(CredentialsError::TokenMissing(name())),
                Some("1".to_string()),
            )
        };
        let at_two = || {
            (
                Err(CredentialsError::InvalidApiUrl(name(), "is not a URL")),
                Some("2".to_string()),
            )
        };
        let gone = || (Err(CredentialsError::SecretNotFound(name())), None);
        for (shown, then) in [(Some("2"), at_two()), (None, gone()), (Some("1"), at_one())] {
            let cache = CredentialsCache::default();
            let watch = cache.watch(|_| true);
            let reads = std::cell::Cell::new(0);
            let secret = name();
            let answer = cache.read_through(&secret, || {
                reads.set(reads.get() + 1);
                let (cache, first) = (&cache, reads.get() == 1);
                let answer = if first { at_one() } else { then.clone() };
                async move {
                    if first {
                        // The listing, while this read is in flight.
                        match shown {
                            Some(version) => assert!(!cache.differs(watch, &name(), Some(version))),
                            None => assert!(cache.unlisted(watch, &HashSet::new()).is_empty()),
                        }
                    }
                    Ok(answer)
                }
            });
            assert_eq!(answer.await.unwrap(), then.0, "listed at {shown:?}");
            // A listing that showed the version read costs no second read.
            let expected = if shown == Some("1") { 1 } else { 2 };
            assert_eq!(reads.get(), expected, "listed at {shown:?}");
        }
    }
}
