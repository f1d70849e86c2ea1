//! What the HTML pages share on top of the template engine (maud, which escapes every value
//! it is given): how text from outside is written.

use maud::Render;

/// Text from outside (customers, subjects, names, notes, links), escaped by maud and, beyond
/// that, with the apostrophe written as `&#39;` as the pages always have: the same bytes for
/// the same text, whatever quoting an attribute might use.
#[derive(Debug, Clone, Copy)]
pub struct Text<'a>(pub &'a str);

impl Render for Text<'_> {
    fn render_to(&self, buffer: &mut String) {
        let mut parts = self.0.split('\'');
        if let Some(first) = parts.next() {
            first.render_to(buffer);
        }
        for part in parts {
            buffer.push_str("&#39;");
            part.render_to(buffer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_and_quotes_from_outside_are_text() {
        assert_eq!(
            Text("<script>alert('x') & \"y\"</script>")
                .render()
                .into_string(),
            "&lt;script&gt;alert(&#39;x&#39;) &amp; &quot;y&quot;&lt;/script&gt;"
        );
        assert_eq!(Text("مرحبا").render().into_string(), "مرحبا");
        assert_eq!(Text("'").render().into_string(), "&#39;");
    }
}
