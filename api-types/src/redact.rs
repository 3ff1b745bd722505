//! Credentials taken out of text that quotes desired.toml, before it reaches status,
//! the journal or a terminal.
//!
//! desired.toml refuses a URL with credentials, but the refusal can only come after
//! the document parses. A TOML *syntax* error on that very line (an unterminated
//! string, a stray character) makes the toml crate quote the line, token included, in
//! its message, which legerd puts into `/v1/status` (readable by group `leger`) and the
//! journal. Every desired.toml error therefore goes through [`redact_credentials`].

/// What replaces a credential.
const MASK: &str = "***";

/// The shortest run of token characters treated as a token in a quoted line. Words of
/// TOML itself (`credentials_file`, `allow_rewrite`) are shorter or have no digit.
const TOKEN_MIN_LEN: usize = 20;

/// `text` with the user and password of every URL (`scheme://user:pass@host`) replaced
/// by `***`, and, in the source lines the toml crate quotes (`12 | url = "…"`), every
/// word that looks like a token (20 or more letters, digits, `-_.+=~`, with at least one
/// letter and one digit) replaced too: an unterminated string is not a URL the first
/// rule can see the end of, and a token may sit outside any URL.
pub fn redact_credentials(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let line = redact_userinfo(line);
        if is_quoted_source_line(&line) {
            out.push_str(&redact_token_words(&line));
        } else {
            out.push_str(&line);
        }
    }
    out
}

/// A line of a toml error that quotes the document: ` 3 | url = "…"`.
fn is_quoted_source_line(line: &str) -> bool {
    let t = line.trim_start();
    let digits = t.chars().take_while(char::is_ascii_digit).count();
    digits > 0 && t[digits..].starts_with(" |")
}

/// Replaces what sits between `://` and the last `@` of the authority with `***`.
fn redact_userinfo(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(at) = rest.find("://") {
        let (before, after) = rest.split_at(at + 3);
        out.push_str(before);
        let end = after
            .find(|c: char| c.is_whitespace() || "/?#\"'`<>\\".contains(c))
            .unwrap_or(after.len());
        let authority = &after[..end];
        match authority.rfind('@') {
            Some(user_end) => {
                out.push_str(MASK);
                out.push_str(&authority[user_end..]);
            }
            None => out.push_str(authority),
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-_.+=~".contains(c)
}

fn redact_token_words(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        let looks_like_token = word.len() >= TOKEN_MIN_LEN
            && word.chars().any(|c| c.is_ascii_digit())
            && word.chars().any(|c| c.is_ascii_alphabetic());
        out.push_str(if looks_like_token { MASK } else { word });
        word.clear();
    };
    for c in line.chars() {
        if is_token_char(c) {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "ghp_Zx81fQ9kLm20aPq7Rt5uVw3yB";

    #[test]
    fn redact_credentials_hides_userinfo_in_any_url() {
        assert_eq!(
            redact_credentials(&format!("see https://bob:{TOKEN}@git.example/r.git now")),
            "see https://***@git.example/r.git now"
        );
        assert_eq!(
            redact_credentials(&format!("url = \"https://{TOKEN}@h/r\" and ssh://git@h/r")),
            "url = \"https://***@h/r\" and ssh://***@h/r"
        );
        assert_eq!(
            redact_credentials("https://git.example/r.git@v1"),
            "https://git.example/r.git@v1",
            "an @ after the path is not userinfo"
        );
    }

    #[test]
    fn redact_credentials_hides_a_token_in_a_quoted_toml_line() {
        // What the toml crate prints for an unterminated string on the url line.
        let text = format!(
            "TOML parse error at line 3, column 7\n  |\n3 | url = \"https://x-access-token:{TOKEN}@git.example/r.git\n  |       ^\ninvalid basic string"
        );
        let red = redact_credentials(&text);
        assert!(!red.contains(TOKEN), "{red}");
        assert!(red.contains("line 3, column 7"), "{red}");
        // A token outside any URL, in a quoted line.
        let text = format!("TOML parse error at line 2\n2 | token = '{TOKEN}\n");
        let red = redact_credentials(&text);
        assert!(!red.contains(TOKEN), "{red}");
        assert!(red.contains("2 | token = '***"), "{red}");
    }

    #[test]
    fn redact_credentials_keeps_ordinary_words() {
        let text = "TOML parse error at line 4, column 1\n4 | credentials_file = \"/etc/leger/git-credentials\"\n  | ^\nunknown field `credentials_fil`, expected one of `url`, `ref`";
        assert_eq!(redact_credentials(text), text);
        // Outside a quoted line a long word is kept: messages name keys and revisions.
        let pin = "pin 0123456789abcdef0123456789abcdef01234567 is not stored";
        assert_eq!(redact_credentials(pin), pin);
    }

    #[test]
    fn redact_credentials_of_the_real_toml_error_hides_the_token() {
        let doc = format!(
            "[source]\nkind = \"git\"\nurl = \"https://x:{TOKEN}@git.example/r.git\nref = \"main\"\n"
        );
        let err = toml::from_str::<toml::Table>(&doc).unwrap_err().to_string();
        assert!(err.contains(TOKEN), "the toml crate quotes the line: {err}");
        let red = redact_credentials(&err);
        assert!(!red.contains(TOKEN), "{red}");
        assert!(!red.contains("Zx81"), "{red}");
    }
}
