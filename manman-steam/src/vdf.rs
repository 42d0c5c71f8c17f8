//! A parser for Valve's KeyValues text format (VDF): app manifests (`appmanifest_<id>.acf`)
//! and `app_info_print` output.
//!
//! ```text
//! "AppState"            // a key, then a section
//! {
//!     "appid"   "896660" // a key and a string value
//!     buildid   12345678 // unquoted tokens work too
//!     "name"    "Say \"hi\"\n"
//! }
//! ```
//!
//! Keys and values are quoted strings (escapes `\"`, `\\`, `\n`, `\t`; any other backslash
//! is kept as is, so Windows paths survive) or unquoted tokens (up to whitespace, `{`, `}`,
//! `"` or `//`). `//` starts a comment to the end of the line. A conditional such as
//! `[$WIN32]` after a value or section is skipped. Keys are looked up case-insensitively, as
//! Valve does; entries keep their order and duplicates.

use std::fmt;

/// A value: a string or a nested section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// `"key" "value"`.
    String(String),
    /// `"key" { … }`.
    Section(Section),
}

impl Value {
    /// The string, when this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::String(s) => Some(s),
            Self::Section(_) => None,
        }
    }

    /// The section, when this is one.
    pub fn as_section(&self) -> Option<&Section> {
        match self {
            Self::String(_) => None,
            Self::Section(s) => Some(s),
        }
    }
}

/// The entries of a section (or of a whole document), in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Section {
    entries: Vec<(String, Value)>,
}

impl Section {
    /// The first value under `key`, compared case-insensitively.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.entries
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    }

    /// The first string under `key`.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Value::as_str)
    }

    /// The first section under `key`.
    pub fn get_section(&self, key: &str) -> Option<&Self> {
        self.get(key).and_then(Value::as_section)
    }

    /// The value at a path of keys, e.g. `["depots", "branches", "public", "buildid"]`.
    pub fn lookup(&self, path: &[&str]) -> Option<&Value> {
        let (last, parents) = path.split_last()?;
        let mut section = self;
        for key in parents {
            section = section.get_section(key)?;
        }
        section.get(last)
    }

    /// The entries in file order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// How many entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Text that is not valid VDF.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct VdfError {
    /// 1-based line.
    pub line: usize,
    /// 1-based column (in characters).
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

/// Sections nested deeper than this are refused (a stack guard for hostile input; real
/// files nest a handful of levels).
pub const MAX_DEPTH: usize = 64;

/// Parses a document: a sequence of entries at the top level.
pub fn parse(text: &str) -> Result<Section, VdfError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lexer = Lexer::new(text);
    let section = parse_entries(&mut lexer, 0)?;
    Ok(section)
}

/// Parses the first entry of `text` (a key and its string or section) and ignores whatever
/// follows it: for a VDF document printed among other output, as `app_info_print` does.
pub fn parse_first(text: &str) -> Result<Section, VdfError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lexer = Lexer::new(text);
    let (token, at) = lexer.next()?;
    let Token::Text(key) = token else {
        return Err(at.error("expected a key"));
    };
    let (token, at) = lexer.next()?;
    let value = match token {
        Token::Text(value) => Value::String(value),
        Token::Open => Value::Section(parse_entries(&mut lexer, 1)?),
        Token::End | Token::Close => return Err(at.error(&format!("key \"{key}\" has no value"))),
    };
    Ok(Section {
        entries: vec![(key, value)],
    })
}

fn parse_entries(lexer: &mut Lexer<'_>, depth: usize) -> Result<Section, VdfError> {
    let mut section = Section::default();
    loop {
        let (token, at) = lexer.next()?;
        let key = match token {
            Token::End if depth == 0 => return Ok(section),
            Token::End => return Err(at.error("a `}` is missing at the end of the input")),
            Token::Close if depth > 0 => return Ok(section),
            Token::Close => return Err(at.error("`}` without a matching `{`")),
            Token::Open => return Err(at.error("expected a key, found `{`")),
            Token::Text(key) => key,
        };
        let (token, at) = lexer.next()?;
        let value = match token {
            Token::Text(value) => Value::String(value),
            Token::Open if depth + 1 >= MAX_DEPTH => {
                return Err(at.error(&format!("sections nest deeper than {MAX_DEPTH}")));
            }
            Token::Open => Value::Section(parse_entries(lexer, depth + 1)?),
            Token::End => return Err(at.error(&format!("key \"{key}\" has no value"))),
            Token::Close => {
                return Err(at.error(&format!("key \"{key}\" has no value before `}}`")));
            }
        };
        lexer.skip_conditional();
        section.entries.push((key, value));
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Token {
    Open,
    Close,
    Text(String),
    End,
}

#[derive(Debug, Clone, Copy)]
struct Position {
    line: usize,
    column: usize,
}

impl Position {
    fn error(self, message: &str) -> VdfError {
        VdfError {
            line: self.line,
            column: self.column,
            message: message.to_owned(),
        }
    }
}

struct Lexer<'a> {
    chars: std::iter::Peekable<std::str::Chars<'a>>,
    rest: &'a str,
    position: Position,
}

impl fmt::Debug for Lexer<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lexer")
            .field("line", &self.position.line)
            .finish()
    }
}

impl<'a> Lexer<'a> {
    fn new(text: &'a str) -> Self {
        Self {
            chars: text.chars().peekable(),
            rest: text,
            position: Position { line: 1, column: 1 },
        }
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.chars.next()?;
        self.rest = &self.rest[c.len_utf8()..];
        if c == '\n' {
            self.position.line += 1;
            self.position.column = 1;
        } else {
            self.position.column += 1;
        }
        Some(c)
    }

    /// Skips whitespace and `//` comments.
    fn skip_trivia(&mut self) {
        loop {
            match self.chars.peek() {
                Some(c) if c.is_whitespace() => {
                    self.bump();
                }
                Some('/') if self.rest.starts_with("//") => {
                    while self.chars.peek().is_some_and(|c| *c != '\n') {
                        self.bump();
                    }
                }
                _ => return,
            }
        }
    }

    fn next(&mut self) -> Result<(Token, Position), VdfError> {
        self.skip_trivia();
        let at = self.position;
        let token = match self.chars.peek() {
            None => Token::End,
            Some('{') => {
                self.bump();
                Token::Open
            }
            Some('}') => {
                self.bump();
                Token::Close
            }
            Some('"') => {
                self.bump();
                Token::Text(self.quoted(at)?)
            }
            Some(_) => Token::Text(self.unquoted()),
        };
        Ok((token, at))
    }

    fn quoted(&mut self, start: Position) -> Result<String, VdfError> {
        let mut out = String::new();
        loop {
            match self.bump() {
                None => return Err(start.error("a quoted string is not closed")),
                Some('"') => return Ok(out),
                Some('\\') => match self.chars.peek() {
                    Some('"') => out.push(self.escaped('"')),
                    Some('\\') => out.push(self.escaped('\\')),
                    Some('n') => out.push(self.escaped('\n')),
                    Some('t') => out.push(self.escaped('\t')),
                    _ => out.push('\\'),
                },
                Some(c) => out.push(c),
            }
        }
    }

    fn escaped(&mut self, c: char) -> char {
        self.bump();
        c
    }

    fn unquoted(&mut self) -> String {
        let mut out = String::new();
        while let Some(&c) = self.chars.peek() {
            if c.is_whitespace() || matches!(c, '{' | '}' | '"') || self.rest.starts_with("//") {
                break;
            }
            out.push(c);
            self.bump();
        }
        out
    }

    /// Skips a `[$CONDITION]` token on the rest of the line, if there is one.
    fn skip_conditional(&mut self) {
        while self
            .chars
            .peek()
            .is_some_and(|c| c.is_whitespace() && *c != '\n')
        {
            self.bump();
        }
        if self.rest.starts_with("[$") || self.rest.starts_with("[!$") {
            while let Some(c) = self.bump() {
                if c == ']' || c == '\n' {
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_sections_keep_order_and_look_up_case_insensitively() {
        let doc = parse(
            "\"AppState\"\n{\n\t\"appid\"\t\t\"896660\"\n\t\"StateFlags\"\t\t\"4\"\n\
             \t\"InstalledDepots\"\n\t{\n\t\t\"896661\"\n\t\t{\n\t\t\t\"manifest\"\t\t\"123\"\n\
             \t\t}\n\t}\n\t\"UserConfig\"\n\t{\n\t}\n}\n",
        )
        .unwrap();
        let app = doc.get_section("appstate").unwrap();
        assert_eq!(app.get_str("APPID"), Some("896660"));
        assert_eq!(app.get_str("stateflags"), Some("4"));
        assert_eq!(
            doc.lookup(&["AppState", "InstalledDepots", "896661", "manifest"])
                .and_then(Value::as_str),
            Some("123")
        );
        assert!(app.get_section("UserConfig").unwrap().is_empty());
        let keys: Vec<_> = app.iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            ["appid", "StateFlags", "InstalledDepots", "UserConfig"]
        );
        assert_eq!(doc.lookup(&["AppState", "nope", "x"]), None);
    }

    #[test]
    fn escapes() {
        let doc = parse(r#""k" "say \"hi\"\n\tback\\slash C:\Games\srv""#).unwrap();
        assert_eq!(
            doc.get_str("k"),
            Some("say \"hi\"\n\tback\\slash C:\\Games\\srv")
        );
    }

    #[test]
    fn comments_and_unquoted_tokens() {
        let doc = parse(
            "// a header comment\n\"root\" // trailing comment\n{\n  buildid 123//c\n  \
             \"url\" \"http://example.com/x\" // the // inside quotes is text\n  \
             flag \"1\" [$WIN32]\n  nested { a b }\n}\n",
        )
        .unwrap();
        let root = doc.get_section("root").unwrap();
        assert_eq!(root.get_str("buildid"), Some("123"));
        assert_eq!(root.get_str("url"), Some("http://example.com/x"));
        assert_eq!(root.get_str("flag"), Some("1"));
        assert_eq!(
            root.lookup(&["nested", "a"]).and_then(Value::as_str),
            Some("b")
        );
        assert_eq!(root.len(), 4);
    }

    #[test]
    fn duplicates_are_kept_and_the_first_wins() {
        let doc = parse("a 1 a 2 A 3").unwrap();
        assert_eq!(doc.len(), 3);
        assert_eq!(doc.get_str("a"), Some("1"));
    }

    #[test]
    fn errors_say_where() {
        let err = parse("\"a\"\n{\n  \"b\" \"c\"\n").unwrap_err();
        assert!(err.message.contains("`}` is missing"), "{err}");
        let err = parse("\"a\" \"b\"\n}").unwrap_err();
        assert_eq!((err.line, err.column), (2, 1));
        let err = parse("\"a\" \"unterminated").unwrap_err();
        assert_eq!((err.line, err.column), (1, 5));
        assert!(err.to_string().contains("not closed"), "{err}");
        let err = parse("\"a\"").unwrap_err();
        assert!(err.message.contains("has no value"), "{err}");
        let err = parse("{ }").unwrap_err();
        assert!(err.message.contains("expected a key"), "{err}");
        let deep = "k {".repeat(MAX_DEPTH + 1);
        assert!(parse(&deep).unwrap_err().message.contains("nest deeper"));
    }

    #[test]
    fn parse_first_ignores_what_follows() {
        let doc =
            parse_first("\"740\"\n{\n\t\"a\" \"{b}\"\n}\nUnloading Steam API...OK\n}").unwrap();
        assert_eq!(
            doc.lookup(&["740", "a"]).and_then(Value::as_str),
            Some("{b}")
        );
        assert!(parse_first("}").is_err());
        assert!(parse_first("\"740\" {").is_err());
    }

    #[test]
    fn empty_input_and_bom() {
        assert!(parse("").unwrap().is_empty());
        assert!(parse("  // only a comment\n").unwrap().is_empty());
        assert_eq!(
            parse("\u{feff}\"a\" \"b\"").unwrap().get_str("a"),
            Some("b")
        );
    }
}
