//! Which Flashback credentials an object uses: a Secret in its own namespace, or the
//! operator-wide default. Reading a Secret's keys is a pure function; fetching it is not.

use std::fmt;
use std::str::FromStr;

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};
use reqwest::Url;

use crate::crd::FlashbackRepository;
use crate::flashback::Token;

/// The Secret key holding the API token.
pub const TOKEN_KEY: &str = "token";
/// The optional Secret key holding the API base URL.
pub const API_URL_KEY: &str = "apiUrl";

/// `NAMESPACE/NAME` of a Secret.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SecretName {
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for SecretName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

impl FromStr for SecretName {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('/') {
            Some((namespace, name))
                if !namespace.is_empty() && !name.is_empty() && !name.contains('/') =>
            {
                Ok(Self {
                    namespace: namespace.to_string(),
                    name: name.to_string(),
                })
            }
            _ => Err(format!("expected NAMESPACE/NAME, got {s:?}")),
        }
    }
}

/// What an object authenticates with. The token never leaves [`Token`]'s redaction.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Credentials {
    pub api_url: Url,
    pub token: Token,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("api_url", &self.api_url.as_str())
            .field("token", &self.token)
            .finish()
    }
}

/// Why an object has no usable credentials. Each is for a person to fix.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CredentialsError {
    #[error("the credentials Secret {0} does not exist")]
    SecretNotFound(SecretName),
    #[error("the credentials Secret {0} has no non-empty key `token`")]
    TokenMissing(SecretName),
    #[error("the key `apiUrl` of the credentials Secret {0} is not a URL")]
    InvalidApiUrl(SecretName),
    #[error("the operator may not read the credentials Secret {0}: grant it `get` on that Secret")]
    SecretForbidden(SecretName),
    #[error(
        "no credentialsSecretRef is set and the operator has no default credentials \
         (--default-credentials-secret)"
    )]
    NoDefault,
}

/// The Secret an object's credentials come from.
pub fn secret_for(
    repo: &FlashbackRepository,
    default: Option<&SecretName>,
) -> Result<SecretName, CredentialsError> {
    match (&repo.spec.credentials_secret_ref, default) {
        (Some(reference), _) => Ok(SecretName {
            namespace: repo.metadata.namespace.clone().unwrap_or_default(),
            name: reference.name.clone(),
        }),
        (None, Some(default)) => Ok(default.clone()),
        (None, None) => Err(CredentialsError::NoDefault),
    }
}

/// Reads the token and API URL out of a Secret.
pub fn from_secret(
    name: &SecretName,
    secret: &Secret,
    default_api_url: &Url,
) -> Result<Credentials, CredentialsError> {
    let value = |key: &str| -> Option<String> {
        let bytes = secret.data.as_ref()?.get(key)?;
        let text = String::from_utf8(bytes.0.clone()).ok()?;
        let text = text.trim();
        (!text.is_empty()).then(|| text.to_string())
    };
    let token = value(TOKEN_KEY).ok_or_else(|| CredentialsError::TokenMissing(name.clone()))?;
    let api_url = match value(API_URL_KEY) {
        Some(url) => Url::parse(&url).map_err(|_| CredentialsError::InvalidApiUrl(name.clone()))?,
        None => default_api_url.clone(),
    };
    Ok(Credentials {
        api_url,
        token: Token::new(token),
    })
}

/// Fetches the Secret named for an object and reads its credentials. `Ok(Err(..))` is a
/// problem for a person; `Err(..)` is the Kubernetes API failing, worth a retry.
pub async fn resolve(
    client: &Client,
    repo: &FlashbackRepository,
    default: Option<&SecretName>,
    default_api_url: &Url,
) -> Result<Result<Credentials, CredentialsError>, kube::Error> {
    let name = match secret_for(repo, default) {
        Ok(name) => name,
        Err(problem) => return Ok(Err(problem)),
    };
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &name.namespace);
    Ok(match secrets.get_opt(&name.name).await {
        Ok(Some(secret)) => from_secret(&name, &secret, default_api_url),
        Ok(None) => Err(CredentialsError::SecretNotFound(name)),
        Err(kube::Error::Api(status)) if status.is_forbidden() => {
            Err(CredentialsError::SecretForbidden(name))
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

    fn name() -> SecretName {
        "team-a/flashback-token".parse().unwrap()
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
            from_secret(&name(), &secret(&[("token", "t0k\n")]), &default_url()).unwrap();
        assert_eq!(credentials.api_url, default_url());
        assert_eq!(credentials.token, Token::new("t0k".to_string()));

        let credentials = from_secret(
            &name(),
            &secret(&[("token", "t0k"), ("apiUrl", "http://127.0.0.1:9")]),
            &default_url(),
        )
        .unwrap();
        assert_eq!(credentials.api_url.as_str(), "http://127.0.0.1:9/");

        let problem = from_secret(
            &name(),
            &secret(&[("token", "t0k"), ("apiUrl", "not a url")]),
            &default_url(),
        )
        .unwrap_err();
        assert_eq!(problem, CredentialsError::InvalidApiUrl(name()));
    }

    #[test]
    fn a_missing_or_empty_token_is_named_without_its_value() {
        for data in [vec![], vec![("token", "  ")], vec![("apiUrl", "http://x")]] {
            let problem = from_secret(&name(), &secret(&data), &default_url()).unwrap_err();
            assert_eq!(problem, CredentialsError::TokenMissing(name()));
            assert!(problem.to_string().contains("team-a/flashback-token"));
        }
    }

    #[test]
    fn debug_output_hides_the_token() {
        let credentials = from_secret(
            &name(),
            &secret(&[("token", "very-secret")]),
            &default_url(),
        )
        .unwrap();
        assert!(!format!("{credentials:?}").contains("very-secret"));
    }
}
