//! Language of an inquiry: `Content-Language`, else restricted text detection, else the default.

use crate::domain::Language;
use crate::tracker::event::LanguageSource;

pub fn detect_language(
    content_language: Option<&str>,
    text: &str,
    default: Language,
) -> (Language, LanguageSource) {
    if let Some(l) = content_language.and_then(Language::parse) {
        return (l, LanguageSource::Header);
    }
    if text.chars().any(|c| ('\u{0600}'..='\u{06FF}').contains(&c)) {
        return (Language::Ar, LanguageSource::Text);
    }
    (default, LanguageSource::Default)
}
