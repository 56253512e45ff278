//! The API token, kept out of every printable form.

use std::fmt;

/// A Flashback API token.
///
/// `Debug` and `Display` print `***`, so a token can sit inside any struct that gets logged or
/// formatted into an error without leaking. The only way to read it is [`Token::expose`], which
/// the client calls once, to build the `Authorization` header.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Token(String);

impl Token {
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    /// The secret itself: only for building the `Authorization` header.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
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
}
