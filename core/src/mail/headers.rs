//! Raw header access, independent of the MIME parser.
//!
//! The header block is the one part of a message that is always fetched whole, and the only part
//! every classification rule reads. Reading it ourselves (split, unfold, look up by name) keeps
//! the digest, the message ids and the automation signals exact even when the MIME parser gives
//! up on a broken message or a truncated body.

/// The header block of a message: the bytes up to and including the first empty line, or the
/// whole input when there is no empty line (a header-only fetch without its terminator).
pub fn header_block(raw: &[u8]) -> &[u8] {
    let mut start = 0;
    while start < raw.len() {
        let end = match raw[start..].iter().position(|&b| b == b'\n') {
            Some(i) => start + i + 1,
            None => raw.len(),
        };
        let line = &raw[start..end];
        let content = line.strip_suffix(b"\n").unwrap_or(line);
        let content = content.strip_suffix(b"\r").unwrap_or(content);
        if content.is_empty() && line.ends_with(b"\n") {
            return &raw[..end];
        }
        start = end;
    }
    raw
}

/// The header block as UTF-8: lines that are not valid UTF-8 (raw 8-bit text from a sender that
/// did not encode it) are read as ISO-8859-1, the most common such charset, so names and subjects
/// stay legible. Returns the text and whether any line needed it.
pub fn transcode_header_block(block: &[u8]) -> (Vec<u8>, bool) {
    if std::str::from_utf8(block).is_ok() {
        return (block.to_vec(), false);
    }
    let mut out = Vec::with_capacity(block.len() + 16);
    for line in block.split_inclusive(|&b| b == b'\n') {
        match std::str::from_utf8(line) {
            Ok(s) => out.extend_from_slice(s.as_bytes()),
            Err(_) => {
                let s: String = line.iter().map(|&b| char::from(b)).collect();
                out.extend_from_slice(s.as_bytes());
            }
        }
    }
    (out, true)
}

/// One unfolded header field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawHeader {
    /// The field name as written.
    pub name: String,
    /// The unfolded value, decoded as UTF-8 (lossily when it is not), leading and trailing
    /// whitespace trimmed. Encoded words are left as they are.
    pub value: String,
}

/// The header fields of a message, in order.
#[derive(Debug, Clone, Default)]
pub struct RawHeaders {
    pub fields: Vec<RawHeader>,
    /// Some header bytes were not valid UTF-8 (raw 8-bit text in an unknown charset).
    pub invalid_utf8: bool,
    /// Lines that are neither a field nor a continuation (besides a leading mbox `From ` line).
    pub stray_lines: usize,
}

impl RawHeaders {
    /// Splits and unfolds a header block (see [`header_block`]).
    pub fn parse(block: &[u8]) -> RawHeaders {
        let mut out = RawHeaders::default();
        let mut current: Option<(String, Vec<u8>)> = None;
        for (index, line) in block.split(|&b| b == b'\n').enumerate() {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() {
                break;
            }
            if line[0] == b' ' || line[0] == b'\t' {
                match current.as_mut() {
                    Some((_, value)) => value.extend_from_slice(line),
                    None => out.stray_lines += 1,
                }
                continue;
            }
            if let Some(done) = current.take() {
                out.push(done);
            }
            match line.iter().position(|&b| b == b':') {
                Some(colon) if is_field_name(&line[..colon]) => {
                    let name = String::from_utf8_lossy(&line[..colon]).trim().to_string();
                    current = Some((name, line[colon + 1..].to_vec()));
                }
                _ => {
                    if !(index == 0 && line.starts_with(b"From ")) {
                        out.stray_lines += 1;
                    }
                }
            }
        }
        if let Some(done) = current.take() {
            out.push(done);
        }
        out
    }

    fn push(&mut self, (name, value): (String, Vec<u8>)) {
        let value = match String::from_utf8(value) {
            Ok(s) => s,
            Err(e) => {
                self.invalid_utf8 = true;
                String::from_utf8_lossy(e.as_bytes()).into_owned()
            }
        };
        self.fields.push(RawHeader {
            name,
            value: value.trim().to_string(),
        });
    }

    /// The first field with this name (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str())
    }

    /// Every field with this name (case-insensitive), in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.fields
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str())
    }

    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
}

/// RFC 5322 field names: printable ASCII except the colon, no spaces (a trailing space before
/// the colon is tolerated, as some senders write `Subject :`).
fn is_field_name(name: &[u8]) -> bool {
    let name = name.strip_suffix(b" ").unwrap_or(name);
    !name.is_empty() && name.iter().all(|&b| (33..=126).contains(&b) && b != b':')
}

/// A parsed `Content-Type`: lower-cased `type/subtype` and its parameters (names lower-cased,
/// values unquoted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentType {
    pub mime_type: String,
    pub params: Vec<(String, String)>,
}

impl ContentType {
    pub fn parse(value: &str) -> ContentType {
        let mut parts = split_params(value).into_iter();
        let mime_type = parts
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase()
            .replace(' ', "");
        let params = parts
            .filter_map(|p| {
                let (k, v) = p.split_once('=')?;
                let v = v.trim();
                let v = v
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .unwrap_or(v);
                Some((k.trim().to_ascii_lowercase(), v.to_string()))
            })
            .collect();
        ContentType { mime_type, params }
    }

    /// A parameter's value (name case-insensitive).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Splits on `;` outside double quotes.
fn split_params(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in value.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            ';' if !quoted => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out
}

/// Normalizes one message id: `<local@domain>` with whitespace removed, the domain lower-cased,
/// the local part's case kept. Missing brackets are tolerated. `None` if nothing is left.
pub fn normalize_message_id(value: &str) -> Option<String> {
    message_ids(value).into_iter().next()
}

/// All message ids in an `In-Reply-To`/`References`/`Message-ID` value, normalized, in order,
/// without duplicates. Tolerates missing brackets (bare `local@domain` words), folding and
/// comments.
pub fn message_ids(value: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut push = |raw: &str| {
        let id: String = raw.chars().filter(|c| !c.is_whitespace()).collect();
        let id = id.trim_matches(|c| c == '<' || c == '>' || c == ',' || c == ';');
        if id.is_empty() {
            return;
        }
        let id = match id.rsplit_once('@') {
            Some((local, domain)) => format!("<{local}@{}>", domain.to_ascii_lowercase()),
            None => format!("<{id}>"),
        };
        if !out.contains(&id) {
            out.push(id);
        }
    };
    let mut rest = value;
    let mut depth = 0usize;
    let mut word = String::new();
    let flush_word = |word: &mut String, push: &mut dyn FnMut(&str)| {
        if word.contains('@') && !word.contains('"') {
            push(word);
        }
        word.clear();
    };
    while let Some(c) = rest.chars().next() {
        rest = &rest[c.len_utf8()..];
        match c {
            '(' => {
                flush_word(&mut word, &mut push);
                depth += 1;
            }
            ')' => depth = depth.saturating_sub(1),
            _ if depth > 0 => {}
            '<' => {
                flush_word(&mut word, &mut push);
                match rest.find('>') {
                    Some(end) => {
                        push(&rest[..end]);
                        rest = &rest[end + 1..];
                    }
                    None => {
                        push(rest);
                        rest = "";
                    }
                }
            }
            c if c.is_whitespace() || c == ',' => flush_word(&mut word, &mut push),
            c => word.push(c),
        }
    }
    flush_word(&mut word, &mut push);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_block_stops_at_first_empty_line() {
        assert_eq!(
            header_block(b"A: 1\r\nB: 2\r\n\r\nbody\r\n\r\n"),
            b"A: 1\r\nB: 2\r\n\r\n"
        );
        assert_eq!(header_block(b"A: 1\nB: 2\n\nbody"), b"A: 1\nB: 2\n\n");
        assert_eq!(header_block(b"A: 1\nB: 2"), b"A: 1\nB: 2");
        assert_eq!(header_block(b""), b"");
    }

    #[test]
    fn unfolds_and_looks_up_case_insensitively() {
        let h = RawHeaders::parse(b"Subject: a\r\n  b\r\nX-One:1\r\n\r\n");
        assert_eq!(h.get("subject"), Some("a  b"));
        assert_eq!(h.get("x-one"), Some("1"));
        assert!(!h.invalid_utf8);
    }

    #[test]
    fn flags_invalid_utf8_and_stray_lines() {
        let h = RawHeaders::parse(b"Subject: caf\xe9\r\ngarbage line\r\n\r\n");
        assert!(h.invalid_utf8);
        assert_eq!(h.stray_lines, 1);
        assert_eq!(h.get("subject"), Some("caf\u{fffd}"));
    }

    #[test]
    fn message_ids_are_tolerant() {
        assert_eq!(
            message_ids("<a@B.com>\r\n <c@d.ORG> e@f.com (comment x@y.z)"),
            vec!["<a@b.com>", "<c@d.org>", "<e@f.com>"]
        );
        assert_eq!(
            message_ids(" <Abc.Def@Host.Example >"),
            vec!["<Abc.Def@host.example>"]
        );
        assert_eq!(message_ids("<a@b> <a@b>"), vec!["<a@b>"]);
        assert!(message_ids("   ").is_empty());
    }

    #[test]
    fn content_type_params() {
        let ct = ContentType::parse(
            "Multipart/Report; Report-Type=\"delivery-status\"; boundary=\"a;b\"",
        );
        assert_eq!(ct.mime_type, "multipart/report");
        assert_eq!(ct.param("report-type"), Some("delivery-status"));
        assert_eq!(ct.param("BOUNDARY"), Some("a;b"));
    }
}
