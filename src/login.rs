//! `flashback-operator login`: a person logs in once, and the refresh token the API answers
//! goes into a credentials Secret, from which the operator keeps the session alive. The
//! password is read from the terminal without echo (or from stdin when it is not a terminal),
//! never from a flag, so it stays out of shell history and process listings.

use std::collections::BTreeMap;
use std::io::BufRead;

use anyhow::{Context, bail};
use flashback_client::{Auth, ClientConfig, FlashbackClient, Url};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::controller::credentials::{API_URL_KEY, REFRESH_TOKEN_KEY, TOKEN_KEY};
use crate::settings::SecretName;

/// What the command was asked.
pub struct LoginRequest {
    pub api_url: Url,
    /// Whether `api_url` was given (then the Secret names it), or is the operator's default.
    pub name_api_url: bool,
    pub email: String,
    pub secret: SecretName,
    /// Create or update the Secret through the kubeconfig, instead of printing it.
    pub apply: bool,
}

/// Reads the password, logs in and prints or applies the Secret.
pub async fn run(request: LoginRequest) -> anyhow::Result<()> {
    let password = read_password(&request.email)?;
    let client = FlashbackClient::new(ClientConfig::with_auth(
        request.api_url.clone(),
        Auth::Anonymous,
    ))
    .context("cannot call the Flashback API")?;
    let login = client
        .login(&request.email, &password)
        .await
        .context("the Flashback API refused the login")?;
    let secret = secret_of(&request, &login.tokens);
    let manifest = serde_saphyr::to_string(&secret)?;
    if request.apply {
        if let Err(error) = apply(&secret, &request.secret).await {
            // The login spent nothing, but its tokens exist only here: printed rather than
            // lost, so that the person can apply them another way.
            print!("{manifest}");
            return Err(error.context("the Secret above was not written; apply it yourself"));
        }
        eprintln!(
            "Secret {} written: objects that name it recover on their own",
            request.secret
        );
    } else {
        print!("{manifest}");
    }
    Ok(())
}

/// The credentials Secret a login makes: its refresh token (and the access token it came
/// with, which the operator uses until it expires), and the API URL when one was named.
pub fn secret_of(request: &LoginRequest, tokens: &flashback_client::SessionTokens) -> Secret {
    let mut data = BTreeMap::new();
    data.insert(
        REFRESH_TOKEN_KEY.to_owned(),
        ByteString(tokens.refresh.expose().as_bytes().to_vec()),
    );
    if let Some(access) = &tokens.access {
        data.insert(
            TOKEN_KEY.to_owned(),
            ByteString(access.expose().as_bytes().to_vec()),
        );
    }
    if request.name_api_url {
        data.insert(
            API_URL_KEY.to_owned(),
            ByteString(request.api_url.as_str().as_bytes().to_vec()),
        );
    }
    Secret {
        metadata: ObjectMeta {
            name: Some(request.secret.name.clone()),
            namespace: Some(request.secret.namespace.clone()),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".to_owned()),
        data: Some(data),
        ..Secret::default()
    }
}

/// Server-side applies the Secret's keys, leaving any other key of it alone.
async fn apply(secret: &Secret, name: &SecretName) -> anyhow::Result<()> {
    use kube::api::{Api, Patch, PatchParams};
    let kube = kube::Client::try_default()
        .await
        .context("cannot reach Kubernetes (kubeconfig)")?;
    let secrets: Api<Secret> = Api::namespaced(kube, &name.namespace);
    let mut applied = serde_json::to_value(secret)?;
    applied["apiVersion"] = "v1".into();
    applied["kind"] = "Secret".into();
    secrets
        .patch(
            &name.name,
            &PatchParams::apply("flashback-operator-login").force(),
            &Patch::Apply(applied),
        )
        .await
        .with_context(|| format!("cannot write the Secret {name}"))?;
    Ok(())
}

/// The password: asked on the terminal without echo, or one line of stdin when stdin is not
/// a terminal (a pipe from a password manager).
fn read_password(email: &str) -> anyhow::Result<String> {
    use std::io::IsTerminal;
    let password = if std::io::stdin().is_terminal() {
        rpassword::prompt_password(format!("Password for {email}: "))
            .context("cannot read the password from the terminal")?
    } else {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the password from stdin")?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    };
    if password.is_empty() {
        bail!("no password given");
    }
    Ok(password)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flashback_client::{SessionTokens, Token};

    #[test]
    fn the_secret_holds_the_refresh_token_and_names_the_api_only_when_asked() {
        let mut request = LoginRequest {
            api_url: Url::parse("http://127.0.0.1:9/").unwrap(),
            name_api_url: false,
            email: "ops@example.com".into(),
            secret: SecretName {
                namespace: "team-a".into(),
                name: "flashback".into(),
            },
            apply: false,
        };
        let tokens = SessionTokens {
            access: Some(Token::new("a1")),
            expires_at: None,
            refresh: Token::new("r1"),
        };
        let keys = |secret: &Secret| -> Vec<(String, String)> {
            secret
                .data
                .clone()
                .unwrap()
                .into_iter()
                .map(|(k, v)| (k, String::from_utf8(v.0).unwrap()))
                .collect()
        };
        let secret = secret_of(&request, &tokens);
        assert_eq!(secret.metadata.namespace.as_deref(), Some("team-a"));
        assert_eq!(
            keys(&secret),
            [
                ("refreshToken".to_owned(), "r1".to_owned()),
                ("token".to_owned(), "a1".to_owned())
            ]
        );
        request.name_api_url = true;
        assert!(
            keys(&secret_of(&request, &tokens))
                .contains(&("apiUrl".to_owned(), "http://127.0.0.1:9/".to_owned()))
        );
    }
}
