//! Secrets the client holds, kept out of every printable form: the API token, and the secret of
//! a repository access key.

use std::fmt;

use serde::Deserialize;

/// Declares a string wrapper whose `Debug` and `Display` print `***`, readable only through
/// `expose`.
macro_rules! redacted {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq, Hash)]
        pub struct $name(String);

        impl $name {
            pub fn new(secret: impl Into<String>) -> Self {
                Self(secret.into())
            }

            /// The secret itself, for the one place that must send or store it.
            pub fn expose(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("***")
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("***")
            }
        }
    };
}

redacted! {
    /// A Flashback API token.
    ///
    /// `Debug` and `Display` print `***`, so a token can sit inside any struct that gets logged
    /// or formatted into an error without leaking. The only way to read it is
    /// [`Token::expose`], which the client calls once, to build the `Authorization` header.
    Token
}

redacted! {
    /// The plain secret of a repository access key, which the API answers once, to the create.
    ///
    /// `Debug` and `Display` print `***`, like [`Token`]; [`KeySecret::expose`] reads it, for
    /// whatever stores it for the workload (a Kubernetes Secret). It is deliberately not
    /// `Serialize`, so it cannot slip into a status or a log as part of a bigger value.
    #[derive(Deserialize)]
    #[serde(transparent)]
    KeySecret
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_hide_the_secret() {
        let token = Token::new("s3cr3t-value");
        assert_eq!(format!("{token:?}"), "***");
        assert_eq!(format!("{token}"), "***");
        assert_eq!(format!("{:?}", Some(&token)), "Some(***)");
        assert_eq!(token.expose(), "s3cr3t-value");
    }

    #[test]
    fn a_key_secret_reads_from_json_and_never_prints() {
        let secret: KeySecret = serde_json::from_str(r#""wJalrXUtnFEMI-K7MDENG""#).unwrap();
        assert_eq!(secret.expose(), "wJalrXUtnFEMI-K7MDENG");
        assert_eq!(format!("{secret:?} {secret}"), "*** ***");
    }
}
