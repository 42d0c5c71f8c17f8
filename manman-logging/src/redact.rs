//! [`redact_url_passwords`]: the passwords of URLs in a text (an error message, a setting)
//! replaced by `***`, so that what the binaries print or log never shows them.

use std::borrow::Cow;

/// What a password is shown as.
const REDACTED: &str = "***";

/// `text` with the password of every URL in it (`scheme://user:password@host…`) replaced by
/// `***`; everything else unchanged. A URL's authority ends at `/`, `?`, `#`, whitespace or a
/// quote; its password is what lies between the first `:` and the last `@` of the authority.
///
/// ```
/// use manman_logging::redact_url_passwords;
///
/// assert_eq!(
///     redact_url_passwords("could not connect to postgres://app:s3cret@db:5432/manman"),
///     "could not connect to postgres://app:***@db:5432/manman"
/// );
/// assert_eq!(redact_url_passwords("amqp://rabbit:5672/%2f"), "amqp://rabbit:5672/%2f");
/// ```
pub fn redact_url_passwords(text: &str) -> Cow<'_, str> {
    let mut out = String::new();
    let mut copied = 0;
    let mut search = 0;
    while let Some(found) = text[search..].find("://") {
        let authority_start = search + found + 3;
        let authority_len = text[authority_start..]
            .find(|c: char| matches!(c, '/' | '?' | '#' | '"' | '\'' | '`') || c.is_whitespace())
            .unwrap_or(text.len() - authority_start);
        let authority = &text[authority_start..authority_start + authority_len];
        if let Some(at) = authority.rfind('@')
            && let Some(colon) = authority[..at].find(':')
        {
            let password_start = authority_start + colon + 1;
            out.push_str(&text[copied..password_start]);
            out.push_str(REDACTED);
            copied = authority_start + at;
        }
        search = authority_start + authority_len;
    }
    if copied == 0 {
        return Cow::Borrowed(text);
    }
    out.push_str(&text[copied..]);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::redact_url_passwords;

    #[test]
    fn passwords_in_urls_are_redacted_and_nothing_else() {
        let cases = [
            (
                "--store: \"postgress://u:pw@db/x\" is not a store",
                "--store: \"postgress://u:***@db/x\" is not a store",
            ),
            (
                "amqp://guest:guest@127.0.0.1:5672/%2f and postgres://a:b@c",
                "amqp://guest:***@127.0.0.1:5672/%2f and postgres://a:***@c",
            ),
            (
                "postgresql://u:p@ss:w0rd@db?sslmode=require",
                "postgresql://u:***@db?sslmode=require",
            ),
            ("postgres://user@db/x", "postgres://user@db/x"),
            ("http://127.0.0.1:8000/api", "http://127.0.0.1:8000/api"),
            ("no url: a:b@c", "no url: a:b@c"),
            ("ends with ://", "ends with ://"),
            ("ünïcode postgres://ü:ß@h", "ünïcode postgres://ü:***@h"),
        ];
        for (text, redacted) in cases {
            assert_eq!(redact_url_passwords(text), redacted, "{text:?}");
        }
    }
}
