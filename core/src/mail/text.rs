//! The text sample of a message: what a person wrote, for language detection and alert previews.
//!
//! Quoted history, attribution lines and signatures are someone else's words (often the desk's,
//! in another language), so they are dropped before the text is used to guess a language.

/// Upper bound of a text sample, in characters.
pub const SAMPLE_CHARS: usize = 400;

/// Subject (without reply/forward prefixes) plus the first lines the sender wrote, whitespace
/// collapsed, at most [`SAMPLE_CHARS`] characters.
pub fn text_sample(subject: &str, body: &str) -> String {
    let mut out = String::new();
    push_words(&mut out, strip_reply_prefixes(subject));
    for line in body.lines() {
        if out.chars().count() >= SAMPLE_CHARS {
            break;
        }
        let trimmed = line.trim();
        if line.trim_end() == "--" || trimmed == "__" || is_original_message_marker(trimmed) {
            break;
        }
        if is_attribution(trimmed) {
            break;
        }
        if trimmed.starts_with('>') || trimmed.is_empty() {
            continue;
        }
        push_words(&mut out, trimmed);
    }
    out.chars()
        .take(SAMPLE_CHARS)
        .collect::<String>()
        .trim_end()
        .to_string()
}

fn push_words(out: &mut String, text: &str) {
    for word in text.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
}

/// Removes `Re:`, `RE:`, `Fwd:`, `RV:`, `AW:`, `رد:` and similar prefixes (repeated).
pub fn strip_reply_prefixes(subject: &str) -> &str {
    const PREFIXES: [&str; 9] = [
        "re",
        "fw",
        "fwd",
        "rv",
        "aw",
        "wg",
        "tr",
        "رد",
        "إعادة توجيه",
    ];
    let mut s = subject.trim();
    loop {
        let Some((head, rest)) = s.split_once(':') else {
            return s;
        };
        let head = head.trim();
        // `Re[2]:` and `Re(2):` count too.
        let base = head.split(['[', '(']).next().unwrap_or(head).to_lowercase();
        if PREFIXES.contains(&base.as_str()) {
            s = rest.trim_start();
        } else {
            return s;
        }
    }
}

/// `On Mon, 1 Jan 2026, Ana <ana@x> wrote:`, `El lun., 1 ene 2026 … escribió:`, Arabic `كتب`.
fn is_attribution(line: &str) -> bool {
    let lower = line.to_lowercase();
    let ends = lower.trim_end_matches(':');
    (lower.ends_with(':') || lower.ends_with("："))
        && (ends.ends_with("wrote")
            || ends.ends_with("escribió")
            || ends.ends_with("escribio")
            || ends.ends_with("كتب")
            || ends.ends_with("schrieb")
            || ends.ends_with("a écrit"))
}

/// Outlook's `-----Original Message-----` / `-----Mensaje original-----` / `From: …` block.
fn is_original_message_marker(line: &str) -> bool {
    let lower = line.to_lowercase();
    (lower.starts_with("-----") && lower.ends_with("-----") && lower.len() > 10)
        || lower.starts_with("________________________________")
}

/// A crude HTML to text: drops tags, `<style>`/`<script>` content, and decodes a few entities.
/// Only used when the MIME parser gave nothing better.
pub fn strip_html(html: &str) -> String {
    let mut out = String::with_capacity(html.len() / 2);
    let mut rest = html;
    while let Some(start) = rest.find('<') {
        out.push_str(&rest[..start]);
        let tag_rest = &rest[start..];
        let lower: String = tag_rest
            .chars()
            .take(8)
            .collect::<String>()
            .to_ascii_lowercase();
        let skip_to = if lower.starts_with("<style") {
            Some("</style>")
        } else if lower.starts_with("<script") {
            Some("</script>")
        } else {
            None
        };
        let end = match skip_to {
            Some(close) => tag_rest
                .to_ascii_lowercase()
                .find(close)
                .map(|i| start + i + close.len()),
            None => tag_rest.find('>').map(|i| start + i + 1),
        };
        match end {
            Some(end) => {
                let tag = rest[start..end].to_ascii_lowercase();
                if tag.starts_with("<br") || tag.starts_with("<p") || tag.starts_with("<div") {
                    out.push('\n');
                } else {
                    out.push(' ');
                }
                rest = &rest[end..];
            }
            None => {
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out.replace("&nbsp;", " ")
        .replace("&amp;", "&")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_quotes_attribution_and_signature() {
        let body = "Hello,\n\nmy order   did not arrive.\n> old quoted\nThanks\n-- \nAna\nCEO\n";
        assert_eq!(
            text_sample("Re: Order 12", body),
            "Order 12 Hello, my order did not arrive. Thanks"
        );
        let body = "Sigue sin funcionar.\n\nEl lun, 23 nov 2026 a las 10:00, Soporte <support@example.com> escribió:\n> Hola\n";
        assert_eq!(
            text_sample("RE: Factura", body),
            "Factura Sigue sin funcionar."
        );
        let body = "Still broken.\nOn Mon, Nov 23, 2026 at 10:00 AM Support <support@example.com> wrote:\n> hi";
        assert_eq!(text_sample("", body), "Still broken.");
    }

    #[test]
    fn bounded() {
        let body = "word ".repeat(500);
        assert!(text_sample("s", &body).chars().count() <= SAMPLE_CHARS);
    }

    #[test]
    fn strips_prefixes() {
        assert_eq!(strip_reply_prefixes("Re: RE[2]: Fwd: Hi"), "Hi");
        assert_eq!(strip_reply_prefixes("رد: مشكلة"), "مشكلة");
        assert_eq!(strip_reply_prefixes("Note: x"), "Note: x");
    }

    #[test]
    fn html_is_stripped() {
        let t = strip_html("<html><style>p{}</style><p>Hi&nbsp;there</p><br>bye</html>");
        assert_eq!(
            t.split_whitespace().collect::<Vec<_>>(),
            ["Hi", "there", "bye"]
        );
    }
}
